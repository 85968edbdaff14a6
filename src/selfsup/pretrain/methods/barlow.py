"""Barlow Twins (Zbontar et al., arXiv:2103.03230): the cross-correlation of two views' embeddings is
driven towards the identity; no negatives and no momentum network. Under data parallel the
embeddings of every rank are gathered (with gradients), so the standardisation and the matrix are
the global batch's: the same as all-reducing the matrix, and exact for the standardisation too."""

from __future__ import annotations

from torch import nn

from selfsup.data.augment import contrastive_view
from selfsup.pretrain.losses import barlow_twins
from selfsup.pretrain.methods import METHODS, Method, mlp
from selfsup.train.distributed import gather_with_grad


@METHODS.register("barlow")
class BarlowTwins(Method):
    knobs = {"lambd": (1e-3, 2e-2, "log")}  # what `selfsup tune --pretrain` searches

    def __init__(self, backbone: nn.Module, proj_dim: int = 512, lambd: float = 5e-3):
        super().__init__(backbone)
        d = backbone.out_dim
        self.projector = mlp(d, proj_dim, proj_dim)
        self.lambd = lambd

    def loss(self, x, generator):
        z0 = self.projector(self.backbone(contrastive_view(x, generator)))
        z1 = self.projector(self.backbone(contrastive_view(x, generator)))
        return barlow_twins(gather_with_grad(z0), gather_with_grad(z1), self.lambd), {}
