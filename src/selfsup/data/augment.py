"""Batched, per-sample-random augmentation and input normalisation on tensors (any device).

Every random number comes from a :class:`Draws`: drawn on the CPU from one seeded generator, so a
seed gives the same augmentation on the CPU and on a GPU, and for the *global* batch, so that under
data parallel (every rank holds the same generator and keeps its own rows) the augmentation of an
image does not depend on the number of ranks. Each op moves its draws to the device with one
non-blocking copy from pinned memory: no host wait per step. A plain ``torch.Generator`` is accepted
wherever a :class:`Draws` is (one process).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from selfsup.core import checks


class Draws:
    """Random numbers for rank ``rank`` of ``world``'s slice of a global batch, from ``generator``.

    A call for ``b`` items draws ``world × b`` numbers (the global batch's, in rank order) and keeps
    rows ``rank·b … (rank+1)·b``: with one rank it is the same draw as on the bare generator, and
    ``rand`` / ``randint`` on torch's CPU generator are serial, so W ranks of B/W items see exactly
    the numbers one process of B items sees."""

    def __init__(self, generator: torch.Generator, rank: int = 0, world: int = 1):
        self.generator, self.rank, self.world = generator, rank, world

    def _mine(self, t: torch.Tensor, b: int) -> torch.Tensor:
        return t[self.rank * b : (self.rank + 1) * b]

    def rand(self, b: int) -> torch.Tensor:
        """(b,) uniform in [0, 1), default dtype, on the CPU."""
        return self._mine(torch.rand(self.world * b, generator=self.generator), b)

    def randint(self, high: int, b: int) -> torch.Tensor:
        """(b,) integers in [0, high), on the CPU."""
        return self._mine(torch.randint(0, high, (self.world * b,), generator=self.generator), b)

    def randn(self, b: int, *shape: int) -> torch.Tensor:
        """(b, *shape) standard normal, default dtype, on the CPU."""
        return self._mine(torch.randn(self.world * b, *shape, generator=self.generator), b)


def draws(source: Draws | torch.Generator) -> Draws:
    return source if isinstance(source, Draws) else Draws(source)


def to_device(t: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A CPU tensor of draws on ``device``: on a GPU one non-blocking copy from pinned memory (the
    host does not wait for the device), elsewhere a plain conversion."""
    if device.type == "cuda":
        return t.pin_memory().to(device, dtype, non_blocking=True)
    return t.to(device, dtype)


_NORMALISER: dict = {}  # (device, dtype) → (mean, std): built once, not copied to the device every batch


def _normaliser(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    key = (str(device), dtype)
    if key not in _NORMALISER:
        mean = torch.tensor(MEAN, dtype=dtype).view(1, 3, 1, 1).to(device)
        std = torch.tensor(STD, dtype=dtype).view(1, 3, 1, 1).to(device)
        _NORMALISER[key] = mean, std
    return _NORMALISER[key]


# per-channel statistics of uint8 RGB scaled to [0, 1]; a fixed normaliser keeps runs comparable
MEAN = (0.45, 0.45, 0.45)
STD = (0.25, 0.25, 0.25)


def to_input(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 → (B, 3, H, W) floats of the default dtype, normalised, channels-last in memory."""
    x = images.permute(0, 3, 1, 2).to(torch.get_default_dtype()).div_(255)
    mean, std = _normaliser(x.device, x.dtype)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def map_batches(fn, images, device, batch: int = 512) -> torch.Tensor:
    """``fn`` of every (N, H, W, 3) uint8 image as network input, ``batch`` at a time; float, on the CPU."""
    return torch.cat(
        [
            fn(to_input(torch.from_numpy(np.asarray(images[i : i + batch])).to(device))).float().cpu()
            for i in range(0, len(images), batch)
        ]
    )


CHUNK_BYTES = 256 * 2**20  # host memory per pinned staging buffer of :func:`resident`


def available_memory(device: torch.device) -> int:
    """Bytes that ``device`` can still hold: free GPU memory, or the host's available memory (Linux's
    MemAvailable: free plus what the page cache would give back)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


RESIDENT_SHARE = 0.9  # of the available memory a resident dataset may take (the rest: the model, the batches)


def resident(images: np.ndarray, idx: np.ndarray, device: torch.device, what: str | None = None) -> torch.Tensor:
    """``images[idx]`` (a uint8 memmap, rows picked by ``idx``) as one tensor on ``device``. On a GPU the
    rows go through two pinned staging buffers of :data:`CHUNK_BYTES` in turn (read the next chunk from
    disk while the last one is copied), so the host never holds the whole subset: a 400k-image 128² set
    is 19.7 GB that each rank would otherwise hold in its own RAM. Elsewhere: the rows, read at once.
    Rows that would not fit in :data:`RESIDENT_SHARE` of the device's available memory are refused
    before any is read (``what`` names them in the error)."""
    idx = np.asarray(idx)
    need = len(idx) * int(np.prod(images.shape[1:])) * images.dtype.itemsize
    # on the host, every process of this machine (torchrun's LOCAL_WORLD_SIZE) holds a copy of its own
    copies = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if device.type != "cuda" else 1
    what = what or f"{len(idx)} resident images"
    checks.fits_in_memory(
        need * copies,
        RESIDENT_SHARE * available_memory(device),
        str(device),
        what + (f" (× {copies} processes)" if copies > 1 else ""),
    )
    if device.type != "cuda":
        return torch.from_numpy(np.ascontiguousarray(images[idx])).to(device)
    out = torch.empty((len(idx), *images.shape[1:]), dtype=torch.uint8, device=device)
    row = int(np.prod(images.shape[1:]))
    per = max(1, min(len(idx), CHUNK_BYTES // max(1, row)))
    buffers = [torch.empty((per, *images.shape[1:]), dtype=torch.uint8).pin_memory() for _ in range(2)]
    done = [None, None]
    with torch.cuda.device(device):
        for n, start in enumerate(range(0, len(idx), per)):
            rows = idx[start : start + per]
            k = n % 2
            if done[k] is not None:
                done[k].synchronize()  # the copy out of this buffer has finished
            buffers[k][: len(rows)].numpy()[...] = images[rows]
            out[start : start + len(rows)].copy_(buffers[k][: len(rows)], non_blocking=True)
            done[k] = torch.cuda.Event()
            done[k].record()
        torch.cuda.current_stream().synchronize()
    return out


def random_flip(x: torch.Tensor, generator: Draws | torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal flip (p = 0.5) of each image of the (B, C, H, W) batch; returns the batch and the
    (B,) mask of flipped images (to flip dense targets alike)."""
    flip = to_device(draws(generator).rand(x.shape[0]) < 0.5, x.device)
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x), flip


def random_translate(x: torch.Tensor, pad: int, generator: Draws | torch.Generator) -> torch.Tensor:
    """Random crop of the batch padded by ``pad`` zeros (the normalised mean) on every side: a
    translation by up to ``pad`` pixels, drawn independently for every image."""
    b, c, h, w = x.shape
    dev = x.device
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    d = draws(generator)
    oy, ox = to_device(torch.stack([d.randint(2 * pad + 1, b), d.randint(2 * pad + 1, b)]), dev)
    iy = (oy[:, None] + torch.arange(h, device=dev)).view(b, 1, h, 1).expand(b, c, h, w + 2 * pad)
    rows = torch.gather(xp, 2, iy)  # (B, C, H, W+2p)
    ix = (ox[:, None] + torch.arange(w, device=dev)).view(b, 1, 1, w).expand(b, c, h, w)
    return torch.gather(rows, 3, ix).contiguous(memory_format=torch.channels_last)


def flip_translate(x: torch.Tensor, pad: int, generator: Draws | torch.Generator) -> torch.Tensor:
    """Random horizontal flip (p = 0.5) and translation by up to ``pad`` pixels (zero fill), drawn
    independently for every image of the (B, C, H, W) batch."""
    x, _ = random_flip(x, generator)
    return random_translate(x, pad, generator) if pad > 0 else x


def colour_jitter(
    x: torch.Tensor, generator: Draws | torch.Generator, strength: float = 0.4, grey_p: float = 0.2
) -> torch.Tensor:
    """Per-image random brightness, contrast and saturation (factors in [1 − s, 1 + s]) and greyscale
    with probability ``grey_p``, on a normalised (B, 3, H, W) batch."""
    b, dev, d = x.shape[0], x.device, draws(generator)
    factors = torch.stack([1 + strength * (2 * d.rand(b) - 1) for _ in range(3)])
    grey_draw = d.rand(b)
    # one copy: the three factors and the greyscale choice (as 0 / 1)
    on_dev = to_device(torch.cat([factors, (grey_draw < grey_p).to(factors.dtype)[None]]), dev)
    sat, con, bri, grey_on = (r.view(b, 1, 1, 1) for r in on_dev)

    grey = x.mean(1, keepdim=True)
    x = grey + (x - grey) * sat.to(x.dtype)  # saturation
    mean = x.mean((1, 2, 3), keepdim=True)
    x = mean + (x - mean) * con.to(x.dtype)  # contrast
    x = x + (bri.to(x.dtype) - 1)  # brightness (normalised units)
    to_grey = grey_on > 0.5
    return torch.where(to_grey, x.mean(1, keepdim=True).expand_as(x), x).contiguous(memory_format=torch.channels_last)


def resized_crop(
    x: torch.Tensor,
    generator: Draws | torch.Generator,
    scale: tuple[float, float] = (0.35, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """Per-image random crop of ``scale`` × the area with aspect ``ratio``, resized back to (H, W)
    bilinearly and flipped horizontally with p = 0.5: one ``grid_sample`` for the whole batch."""
    b, dev, d = x.shape[0], x.device, draws(generator)

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * d.rand(b)

    area = uniform(*scale)
    log_r = uniform(float(torch.log(torch.tensor(ratio[0]))), float(torch.log(torch.tensor(ratio[1]))))
    aspect = torch.exp(log_r)
    sw = torch.sqrt(area * aspect).clamp(max=1.0)  # crop width / image width
    sh = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (2 * d.rand(b) - 1) * (1 - sw)  # centre in [-1, 1] coordinates
    cy = (2 * d.rand(b) - 1) * (1 - sh)
    flip = torch.where(d.rand(b) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sw * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = sh, cy
    grid = torch.nn.functional.affine_grid(to_device(theta, dev, x.dtype), list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(
        x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    ).contiguous(memory_format=torch.channels_last)


def cutout(x: torch.Tensor, generator: Draws | torch.Generator, size: float = 0.25, p: float = 0.5) -> torch.Tensor:
    """Zero (the normalised mean) a random square of side ``size`` × H in each image with probability ``p``."""
    b, _, h, w = x.shape
    dev, d = x.device, draws(generator)
    s = max(1, round(size * h))
    cy, cx = d.randint(h, b), d.randint(w, b)
    on = (d.rand(b) < p).long()
    cy, cx, on = (r.view(b, 1, 1) for r in to_device(torch.stack([cy, cx, on]), dev))
    on = on > 0
    ys, xs = torch.arange(h, device=dev).view(1, h, 1), torch.arange(w, device=dev).view(1, 1, w)
    hole = on & ((ys - cy).abs() <= s // 2) & ((xs - cx).abs() <= s // 2)
    return x.masked_fill(hole.unsqueeze(1), 0.0).contiguous(memory_format=torch.channels_last)


def contrastive_view(x: torch.Tensor, generator: Draws | torch.Generator, cut: bool = False) -> torch.Tensor:
    """One view for the multi-view methods: resized crop + flip, colour jitter + greyscale (and cutout)."""
    v = colour_jitter(resized_crop(x, generator), generator)
    return cutout(v, generator) if cut else v


def flip_targets(y: torch.Tensor, flip: torch.Tensor, mirror) -> torch.Tensor:
    """``y`` where an image was not flipped, ``mirror(y)`` (the flipped images' targets) where it was."""
    return torch.where(flip.view(-1, *([1] * (y.ndim - 1))), mirror(y), y)


def finetune_view(
    x: torch.Tensor, y: torch.Tensor, generator: Draws | torch.Generator, dense: bool, mirror=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's finetuning augmentation (appendix A, with the released code's sizes): flip,
    crop with zero padding of H/8, brightness / colour perturbation with greyscale 25 %, and Cutout
    of side H/4, per image. Dense tasks (targets on the feature-map grid, last axis = width) skip the
    crop, as the paper does for depth. Targets follow the flip: ``mirror`` maps a batch of targets
    to those of the mirrored images (a dense map flips along its width when it is not given)."""
    x, flip = random_flip(x, generator)
    mirror = mirror or ((lambda t: t.flip(-1)) if dense else None)
    if mirror is not None:
        y = flip_targets(y, flip, mirror)
    if not dense:
        x = random_translate(x, max(1, x.shape[2] // 8), generator)
    x = colour_jitter(x, generator, strength=0.4, grey_p=0.25)
    return cutout(x, generator, size=0.25, p=1.0), y
