"""SimCLR (Chen et al., arXiv:2002.05709): two augmented views, NT-Xent over in-batch negatives (the global
batch under data parallel: every rank's embeddings are gathered, with gradients)."""

from __future__ import annotations

from torch import nn

from selfsup.data.augment import contrastive_view
from selfsup.pretrain.losses import nt_xent
from selfsup.pretrain.methods import METHODS, Method, mlp
from selfsup.train.distributed import gather_with_grad


@METHODS.register("simclr")
class SimCLR(Method):
    knobs = {"temperature": (0.05, 0.5, "log")}  # what `selfsup tune --pretrain` searches

    def __init__(self, backbone: nn.Module, proj_dim: int = 128, temperature: float = 0.1):
        super().__init__(backbone)
        d = backbone.out_dim
        self.projector = mlp(d, d, proj_dim)
        self.temperature = temperature

    def loss(self, x, generator):
        z0 = self.projector(self.backbone(contrastive_view(x, generator)))
        z1 = self.projector(self.backbone(contrastive_view(x, generator)))
        return nt_xent(gather_with_grad(z0), gather_with_grad(z1), self.temperature), {}
