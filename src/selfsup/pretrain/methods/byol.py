"""BYOL (Grill et al., arXiv:2006.07733): an online network with a predictor regresses the projection
of a momentum target network on the other view; symmetrised; no negatives. The target's momentum
rises from ``momentum`` to 1 along a cosine over training."""

from __future__ import annotations

import math

import torch
from torch import nn

from selfsup.data.augment import contrastive_view
from selfsup.pretrain.losses import byol_loss
from selfsup.pretrain.methods import METHODS, Method, ema_, frozen_copy, mlp


@METHODS.register("byol")
class BYOL(Method):
    knobs = {"momentum": (0.9, 0.999, "linear")}  # what `selfsup tune --pretrain` searches

    def __init__(self, backbone: nn.Module, proj_dim: int = 128, hidden: int = 512, momentum: float = 0.99):
        super().__init__(backbone)
        d = backbone.out_dim
        self.projector = mlp(d, hidden, proj_dim)
        self.predictor = mlp(proj_dim, hidden, proj_dim)
        self.target_backbone, self.target_projector = frozen_copy(backbone), frozen_copy(self.projector)
        self.base_momentum = momentum

    def loss(self, x, generator):
        v0, v1 = contrastive_view(x, generator), contrastive_view(x, generator)
        p0 = self.predictor(self.projector(self.backbone(v0)))
        p1 = self.predictor(self.projector(self.backbone(v1)))
        with torch.no_grad():
            z0 = self.target_projector(self.target_backbone(v0))
            z1 = self.target_projector(self.target_backbone(v1))
        return byol_loss(p0, z1) + byol_loss(p1, z0), {}

    def after_step(self, step, total):
        m = 1 - (1 - self.base_momentum) * (math.cos(math.pi * step / total) + 1) / 2
        ema_(self.target_backbone, self.backbone, m)
        ema_(self.target_projector, self.projector, m)
