"""Contrastive Multiview Coding (Tian et al., arXiv:1906.05849), as in the paper: the L and ab channels of
one Lab image are two views, encoded by the two halves of a split backbone and contrasted both ways
against the other images of the batch and a queue of embeddings from earlier batches (a ring buffer
in place of CMC's memory bank). The queue starts empty and only filled entries are used: a queue of
random vectors lets the embeddings collapse to a constant before it fills. Under data parallel the
in-batch negatives and the keys entering the queues are the global batch's (gathered)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.core.errors import UserError
from selfsup.data.augment import flip_translate
from selfsup.pretrain.losses import cross_view_info_nce
from selfsup.pretrain.methods import METHODS, Method, enqueue_
from selfsup.train.distributed import gather, gather_with_grad, offset


@METHODS.register("cmc")
class CMC(Method):
    knobs = {"temperature": (0.03, 0.3, "log")}  # what `selfsup tune --pretrain` searches
    backbone_variant = "split"  # the L and ab views each get one half of a split backbone

    def __init__(
        self, backbone: nn.Module, proj_dim: int = 128, queue_size: int = 1024, temperature: float = 0.07, pad: int = 8
    ):
        if not hasattr(backbone, "halves"):
            raise UserError("method 'cmc' needs a split backbone such as resnet9_split or resnet50_split")
        super().__init__(backbone)
        d = backbone.out_dim // 2
        self.head_l, self.head_ab = nn.Linear(d, proj_dim), nn.Linear(d, proj_dim)
        self.temperature, self.pad = temperature, pad
        for name in ("queue_l", "queue_ab"):
            self.register_buffer(name, torch.zeros(queue_size, proj_dim))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))
        # the buffer's value mirrored on the host, so that no step waits for the device to read it;
        # read from the buffer once after construction or a load
        self._filled: int | None = None
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_filled", None))

    def loss(self, x, generator):
        f_l, f_ab = self.backbone.halves(flip_translate(x, self.pad, generator))
        z_l, z_ab = F.normalize(self.head_l(f_l), dim=1), F.normalize(self.head_ab(f_ab), dim=1)
        if self._filled is None:
            self._filled = int(self.queue_filled)
        n, at = self._filled, offset(len(z_l))
        all_l, all_ab = gather_with_grad(z_l), gather_with_grad(z_ab)  # in-batch negatives: the global batch
        loss = cross_view_info_nce(z_l, all_ab, self.queue_ab[:n].clone(), self.temperature, at) + cross_view_info_nce(
            z_ab, all_l, self.queue_l[:n].clone(), self.temperature, at
        )
        ptr = self.queue_ptr.clone()
        keys_l, keys_ab = gather(z_l), gather(z_ab)
        enqueue_(self.queue_l, self.queue_ptr, keys_l)
        enqueue_(self.queue_ab, ptr, keys_ab)
        self._filled = min(len(self.queue_l), n + len(keys_l))  # (0 with queue_size=0: batch only)
        self.queue_filled.fill_(self._filled)
        return loss, {}
