"""Data-parallel training across processes started by ``torchrun`` (DDP semantics, explicit).

``torchrun --nproc_per_node N -m selfsup pretrain ...`` sets WORLD_SIZE/RANK/LOCAL_RANK; :func:`setup`
joins the process group (NCCL on GPUs, gloo on the CPU). Every rank starts from rank 0's weights,
draws the same batch indices, trains on its own slice of each batch with its own augmentation, and
averages gradients with one all-reduce per step before the optimiser step, so the ranks stay
identical. Rank 0 alone logs, shows progress and writes files.
"""

from __future__ import annotations

import atexit
import datetime
import os

import torch
import torch.distributed as dist
from torch import nn

TIMEOUT = datetime.timedelta(minutes=10)  # a collective that waits longer (a dead rank) fails, not hangs


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def uses_gpu() -> bool:
    """Whether this process has a GPU of its own: CUDA sees more devices than its LOCAL_RANK (two ranks on a
    one-GPU machine train on the CPU with gloo rather than fail with "invalid device ordinal")."""
    return torch.cuda.is_available() and torch.cuda.device_count() > local_rank()


def backend() -> str:
    return "nccl" if uses_gpu() else "gloo"


def setup() -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun with WORLD_SIZE > 1 (NCCL
    bound to this rank's GPU when it has one, else gloo; :data:`TIMEOUT`), and leaves it at exit."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if backend() == "nccl":
            dev = torch.device("cuda", local_rank())
            torch.cuda.set_device(dev)
            dist.init_process_group("nccl", timeout=TIMEOUT, device_id=dev)
        else:
            dist.init_process_group("gloo", timeout=TIMEOUT)
        atexit.register(teardown)
    return rank(), world_size()


def teardown() -> None:
    """Leave the process group (NCCL warns of leaked resources otherwise)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world_size() > 1 else 0


def is_main() -> bool:
    return rank() == 0


def device() -> torch.device:
    """This rank's GPU (cuda:LOCAL_RANK) when it has one, else the CPU."""
    return torch.device("cuda", local_rank()) if uses_gpu() else torch.device("cpu")


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
    """Whether every rank holds the same parameters (a checksum compared across ranks). Buffers (BatchNorm
    statistics, MoCo / CMC queues) are not synchronised by this home-made data parallel, so they differ
    (issue 28: DistributedDataParallel with SyncBatchNorm)."""
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
