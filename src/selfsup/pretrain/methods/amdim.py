"""AMDIM (Bachman et al., arXiv:1906.00910): two augmented views; the global feature of one view and
the local features of its last stage are contrasted with the local features of the other view's
previous stage (global-to-local and local-to-local across layers), both ways, with soft-clipped
scores and a penalty on their squares. Local maps are average-pooled to small grids to keep the
score tensor small (2×2 anchors, 4×4 targets)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.data.augment import contrastive_view
from selfsup.pretrain.losses import amdim_nce
from selfsup.pretrain.methods import METHODS, Method
from selfsup.train.distributed import gather_with_grad, offset


def _locations(fmap: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, D, H, W) → (B, grid², D)."""
    return F.adaptive_avg_pool2d(fmap, grid).flatten(2).transpose(1, 2)


@METHODS.register("amdim")
class AMDIM(Method):
    knobs = {"clip": (5.0, 30.0, "linear"), "reg": (0.005, 0.5, "log")}  # what `selfsup tune --pretrain` searches

    def __init__(
        self,
        backbone: nn.Module,
        dim: int = 128,
        clip: float = 20.0,
        reg: float = 0.05,
        anchor_grid: int = 2,
        local_grid: int = 4,
    ):
        super().__init__(backbone)
        with torch.no_grad():
            maps = backbone.stages(torch.zeros(2, 3, 32, 32))
        c_mid, c_last = maps[-2].shape[1], maps[-1].shape[1]
        self.global_head = nn.Linear(backbone.out_dim, dim)
        self.last_head = nn.Conv2d(c_last, dim, 1)
        self.mid_head = nn.Conv2d(c_mid, dim, 1)
        self.clip, self.reg, self.anchor_grid, self.local_grid = clip, reg, anchor_grid, local_grid

    def _encode(self, v: torch.Tensor):
        *_, mid, last = self.backbone.stages(v)
        pooled = torch.amax(last, dim=(2, 3)) if self.backbone.pool == "max" else last.mean((2, 3))
        return (
            self.global_head(pooled)[:, None],
            _locations(self.last_head(last), self.anchor_grid),
            _locations(self.mid_head(mid), self.local_grid),
        )

    def loss(self, x, generator):
        g0, a0, l0 = self._encode(contrastive_view(x, generator))
        g1, a1, l1 = self._encode(contrastive_view(x, generator))
        total, reg = 0.0, 0.0
        # negatives: the local features of every image of the global batch (gathered under data parallel)
        l0, l1, at = gather_with_grad(l0), gather_with_grad(l1), offset(len(g0))
        for anchors, targets in ((g0, l1), (a0, l1), (g1, l0), (a1, l0)):
            loss, sq = amdim_nce(anchors, targets, self.clip, at)
            total, reg = total + loss, reg + sq
        return total / 4 + self.reg * reg / 4, {"score_sq": reg.detach() / 4}
