"""Backbones: ``create_backbone("resnet9", width=0.25, colour="rgb")``.

Every backbone is a :class:`Backbone`: it takes normalised RGB (``augment.to_input``), converts it
to its colour space, and gives ``stages(x)`` (the feature map after every stage, the last one at
1/8 of the input side: 8×8 at 64², 16×16 at 128² for dense tasks), ``feature_map(x)`` (the last
stage) and ``forward(x)`` (pooled features, ``out_dim`` wide).

May import: core, data.
"""

from __future__ import annotations

import torch
from torch import nn

from selfsup.core.errors import UserError
from selfsup.core.registry import Registry
from selfsup.data.colour import COLOURS, to_colour


class Backbone(nn.Module):
    out_dim: int
    pool: str = "max"  # global pooling of the last feature map: "max" or "avg"

    def __init__(self, colour: str = "rgb"):
        super().__init__()
        if colour not in COLOURS:
            raise UserError(f"unknown colour space {colour!r}: choose from {', '.join(COLOURS)}")
        self.colour = colour

    def body(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps after every stage, from input already in the backbone's colour space."""
        raise NotImplementedError

    def groups(self) -> list[list[nn.Module]]:
        """The modules of each of the 4 stages, input first (what ``--protocol frozen-k`` freezes)."""
        raise NotImplementedError

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.body(to_colour(x, self.colour))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.feature_map(x)
        return torch.amax(f, dim=(2, 3)) if self.pool == "max" else f.mean((2, 3))


BACKBONES: Registry[Backbone] = Registry("backbone")


def create_backbone(name: str, **kwargs) -> Backbone:
    return BACKBONES.create(name, **kwargs)


def list_backbones() -> list[str]:
    return BACKBONES.names()


from selfsup.models import resnet9, resnet50, split  # noqa: E402,F401  (registers)
