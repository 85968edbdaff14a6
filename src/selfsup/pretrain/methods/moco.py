"""MoCo v2 (He et al., arXiv:1911.05722; Chen et al., arXiv:2003.04297): a momentum key encoder, a queue
of past keys as negatives, an MLP projector and SimCLR-style augmentation.

Under data parallel every rank's keys enter the queue (gathered in rank order), so the queue holds
what one process's would. Without several devices there is no shuffled batch norm: the key
encoder's BN sees the same batch as the query encoder's, which the ablations of the paper show
costs a little accuracy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.data.augment import contrastive_view
from selfsup.pretrain.losses import info_nce
from selfsup.pretrain.methods import METHODS, Method, ema_, enqueue_, frozen_copy, mlp
from selfsup.train.distributed import gather


@METHODS.register("moco")
class MoCo(Method):
    knobs = {
        "temperature": (0.05, 0.5, "log"),
        "momentum": (0.9, 0.999, "linear"),
    }  # what `selfsup tune --pretrain` searches

    def __init__(
        self,
        backbone: nn.Module,
        proj_dim: int = 128,
        queue_size: int = 1024,
        momentum: float = 0.99,
        temperature: float = 0.2,
    ):
        super().__init__(backbone)
        d = backbone.out_dim
        self.projector = mlp(d, d, proj_dim)
        self.key_backbone, self.key_projector = frozen_copy(backbone), frozen_copy(self.projector)
        self.momentum, self.temperature = momentum, temperature
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def loss(self, x, generator):
        q = self.projector(self.backbone(contrastive_view(x, generator)))
        with torch.no_grad():
            k = F.normalize(self.key_projector(self.key_backbone(contrastive_view(x, generator))), dim=1)
        loss = info_nce(q, k, self.queue.clone(), self.temperature)
        enqueue_(self.queue, self.queue_ptr, gather(k))
        return loss, {}

    def after_step(self, step, total):
        ema_(self.key_backbone, self.backbone, self.momentum)
        ema_(self.key_projector, self.projector, self.momentum)
