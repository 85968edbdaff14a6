"""CMC's split backbones: two copies of a backbone at half the width, one on L and one on ab (always Lab
input); feature maps and pooled features are the two halves concatenated, so the width and the output
size match the unsplit backbone's. ``halves(x)`` gives the two pooled features."""

from __future__ import annotations

import torch

from selfsup.models import BACKBONES, Backbone, create_backbone


class Split(Backbone):
    def __init__(self, family: str, width: float = 1.0):
        super().__init__("lab")
        self.family = family
        self.l = create_backbone(family, width=width / 2, in_channels=1)
        self.ab = create_backbone(family, width=width / 2, in_channels=2)
        self.out_dim = self.l.out_dim + self.ab.out_dim
        self.pool = self.l.pool

    def body(self, x):
        return [torch.cat(pair, 1) for pair in zip(self.l.body(x[:, :1]), self.ab.body(x[:, 1:]))]

    def groups(self):
        return [a + b for a, b in zip(self.l.groups(), self.ab.groups())]

    def halves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self(x)
        return f[:, : self.l.out_dim], f[:, self.l.out_dim :]


def split_name(family: str) -> str:
    return family if family.endswith("_split") else f"{family}_split"


@BACKBONES.register("resnet9_split")
def resnet9_split(width: float = 1.0, colour: str = "lab") -> Split:
    return Split("resnet9", width)


@BACKBONES.register("resnet50_split")
def resnet50_split(width: float = 1.0, colour: str = "lab") -> Split:
    return Split("resnet50", width)
