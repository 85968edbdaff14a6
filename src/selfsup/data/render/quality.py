"""Cycles' quality settings as plain data (no ``bpy``): what ``selfsup render`` and
``bench/render_quality.py`` choose between, and what :mod:`selfsup.data.render.blender` applies."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from selfsup.core.errors import UserError

DENOISERS = ("none", "fast", "accurate")  # OpenImageDenoise off, or on with its fast / accurate prefilter
DEVICES = ("cpu", "gpu")


@dataclass(frozen=True)
class Quality:
    """How Cycles samples one image. The defaults are the renderer's settings before this class:
    16 samples per pixel, no denoising, no adaptive sampling, the light tree, 4 bounces."""

    samples: int = 16
    denoise: str = "none"  # none | fast | accurate: OpenImageDenoise with albedo + normal guides
    adaptive_threshold: float = 0.0  # Cycles' adaptive sampling noise threshold; 0 = off
    light_tree: bool = True
    max_bounces: int = 4  # diffuse bounces min(2, this), glossy min(1, this)

    def check(self) -> Quality:
        if not isinstance(self.samples, int) or self.samples < 1:
            raise UserError(f"invalid samples {self.samples!r}: must be a whole number ≥ 1")
        if self.denoise not in DENOISERS:
            raise UserError(f"unknown denoiser {self.denoise!r}: choose from {', '.join(DENOISERS)}")
        if not 0 <= self.adaptive_threshold < 1:
            raise UserError(f"invalid adaptive threshold {self.adaptive_threshold!r}: must be in [0, 1)")
        if not isinstance(self.max_bounces, int) or self.max_bounces < 0:
            raise UserError(f"invalid bounces {self.max_bounces!r}: must be a whole number ≥ 0")
        return self

    def label(self) -> str:
        """A short name: ``16spp``, ``4spp+oidn-fast``, ``16spp+adaptive0.05-lighttree``, ..."""
        parts = [f"{self.samples}spp"]
        if self.denoise != "none":
            parts.append(f"oidn-{self.denoise}")
        if self.adaptive_threshold:
            parts.append(f"adaptive{self.adaptive_threshold:g}")
        if not self.light_tree:
            parts.append("no-lighttree")
        if self.max_bounces != Quality.max_bounces:
            parts.append(f"bounces{self.max_bounces}")
        return "+".join(parts)

    def params(self) -> dict:
        """The settings that differ from the defaults, beside ``samples`` (a dataset manifest's record)."""
        default = Quality()
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name == "samples" or getattr(self, f.name) != getattr(default, f.name)
        }

    def as_dict(self) -> dict:
        return asdict(self)
