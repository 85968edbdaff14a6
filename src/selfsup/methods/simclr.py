"""SimCLR (Chen et al., arXiv:2002.05709): two augmented views, NT-Xent over in-batch negatives."""

from __future__ import annotations

import torch
from torch import nn

from ..augment import colour_jitter, flip_translate
from ..losses import nt_xent
from . import METHODS, Method


class SimCLR(Method):
    def __init__(self, backbone: nn.Module, proj_dim: int = 128, temperature: float = 0.1, pad: int = 8):
        super().__init__(backbone)
        d = backbone.out_dim
        self.projector = nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(inplace=True), nn.Linear(d, proj_dim))
        self.temperature, self.pad = temperature, pad

    def view(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return colour_jitter(flip_translate(x, self.pad, generator), generator)

    def loss(self, x, generator):
        z0 = self.projector(self.backbone(self.view(x, generator)))
        z1 = self.projector(self.backbone(self.view(x, generator)))
        return nt_xent(z0, z1, self.temperature), {}


@METHODS.register("simclr")
def simclr(backbone: nn.Module, **kwargs) -> SimCLR:
    return SimCLR(backbone, **kwargs)
