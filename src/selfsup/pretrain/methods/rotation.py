"""Rotation prediction (Gidaris et al., arXiv:1803.07728): classify 0/90/180/270° rotations.

Balanced: every image of the batch appears under all four rotations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.data.augment import flip_translate
from selfsup.pretrain.methods import METHODS, Method


def rotate_four(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, H, W) → the 4B rotated images and their rotation labels 0..3 (k × 90° counter-clockwise)."""
    views = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
    labels = torch.arange(4, device=x.device).repeat_interleave(x.shape[0])
    return views.contiguous(memory_format=torch.channels_last), labels


def rotation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean 4-way cross-entropy."""
    return F.cross_entropy(logits, labels)


@METHODS.register("rotation")
class Rotation(Method):
    knobs = {"pad": (0, 8, "int")}  # what `selfsup tune --pretrain` searches

    def __init__(self, backbone: nn.Module, pad: int = 4):
        super().__init__(backbone)
        self.head = nn.Linear(backbone.out_dim, 4)
        self.pad = pad

    def loss(self, x, generator):
        views, labels = rotate_four(flip_translate(x, self.pad, generator))
        logits = self.head(self.backbone(views))
        acc = (logits.argmax(1) == labels).float().mean()
        return rotation_loss(logits, labels), {"rotation_acc": acc.detach()}
