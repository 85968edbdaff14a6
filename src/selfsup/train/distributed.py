"""Data-parallel training across processes started by ``torchrun`` (DDP semantics, explicit).

``torchrun --nproc_per_node N -m selfsup pretrain ...`` sets WORLD_SIZE/RANK/LOCAL_RANK; :func:`setup`
joins the process group (NCCL on GPUs, gloo on the CPU). Every rank starts from rank 0's weights,
draws the same batch indices, trains on its own slice of each batch with its own augmentation, and
averages gradients with one all-reduce per step before the optimiser step, so the ranks stay
identical. Rank 0 alone logs, shows progress and writes files.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def setup() -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun with WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return rank(), world_size()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world_size() > 1 else 0


def is_main() -> bool:
    return rank() == 0


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def broadcast_module(module: nn.Module) -> None:
    """Every rank takes rank 0's parameters and buffers."""
    if world_size() > 1:
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, 0)


def average_gradients(params: list[torch.Tensor]) -> None:
    """One all-reduce over all gradients (flattened), divided by the world size."""
    world = world_size()
    if world == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(g).clone()
        offset += n


def in_sync(module: nn.Module) -> bool:
    """Whether every rank holds the same parameters (a checksum compared across ranks)."""
    if world_size() == 1:
        return True
    s = torch.stack([p.detach().double().sum() for p in module.parameters()]).sum().view(1)
    gathered = [torch.zeros_like(s) for _ in range(world_size())]
    dist.all_gather(gathered, s)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def all_gather_object(obj):
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
