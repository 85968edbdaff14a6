"""Data-parallel training across processes started by ``torchrun``, on torch's DistributedDataParallel.

``torchrun --nproc_per_node N -m selfsup pretrain ...`` sets WORLD_SIZE/RANK/LOCAL_RANK; :func:`setup`
joins the process group (NCCL on GPUs, gloo on the CPU). :func:`selfsup.train.fit` wraps the objective
in :func:`wrap` (DDP: rank 0's weights at the start, bucketed gradient all-reduce overlapping the
backward, buffers broadcast from rank 0 every step, SyncBatchNorm on GPUs). Every rank draws the
same batch indices and random numbers (:class:`selfsup.data.augment.Draws`) and trains on its own
contiguous slice of each batch; losses whose terms span the batch (negatives, cross-correlations,
queues) see the global batch through :func:`gather_with_grad` / :func:`gather`, so results do not
depend on the number of ranks. Rank 0 alone logs, shows progress and writes files.

Batch norm under gloo on the CPU stays per rank: torch's SyncBatchNorm needs a GPU.
Stacked sweeps (:mod:`selfsup.train.stacked`) stay one process: torch.func with DDP's buffer
broadcast and vmap with SyncBatchNorm are known not to work (pytorch#130932, #91629).
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


def local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def uses_gpu() -> bool:
    """Whether this process has a GPU of its own: CUDA sees a device for every rank on this machine
    (LOCAL_WORLD_SIZE) and for this one (LOCAL_RANK). Two ranks on a one-GPU machine both train on the CPU
    with gloo, rather than fail with "invalid device ordinal" or join with different backends."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return count > local_rank() and count >= local_world_size()


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


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """BatchNorm → SyncBatchNorm (statistics over the global batch) under data parallel on GPUs; the
    module unchanged on one process or on the CPU, where torch's SyncBatchNorm does not run. In place
    for every module that is not itself a batch norm (parameters and state-dict names are kept)."""
    if world_size() > 1 and next(module.parameters()).device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return module


def wrap(step: nn.Module) -> nn.Module:
    """``step`` (a module whose forward returns the loss) under DistributedDataParallel when there are
    several ranks, else itself. Gradients are bucket views (no copy into the all-reduce buffers)."""
    if world_size() == 1:
        return step
    from torch.nn.parallel import DistributedDataParallel

    dev = next(step.parameters()).device
    return DistributedDataParallel(step, device_ids=[dev] if dev.type == "cuda" else None, gradient_as_bucket_view=True)


@torch.no_grad()
def broadcast_buffers(module: nn.Module) -> None:
    """Every rank takes rank 0's buffers (what DDP does before each forward; after the last step too, so
    that every rank ends with the state rank 0 saves)."""
    if world_size() > 1:
        for b in module.buffers():
            dist.broadcast(b, 0)


def gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """Every rank's ``t`` (B, ...) concatenated in rank order (W·B, ...), with gradients flowing back to
    each rank's own rows (torch.distributed.nn's all_gather sums them across ranks; DDP's average then
    gives every parameter the gradient of one process on the global batch). ``t`` itself on one process."""
    if world_size() == 1:
        return t
    return _GatherWithGrad.apply(t.contiguous())


class _GatherWithGrad(torch.autograd.Function):
    """All-gather forward; backward: the gradients of every rank's copy summed (one all-reduce) and this
    rank's rows kept."""

    @staticmethod
    def forward(ctx, t):
        out = [torch.empty_like(t) for _ in range(world_size())]
        dist.all_gather(out, t)
        ctx.rows = t.shape[0]
        return torch.cat(out)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[rank() * ctx.rows : (rank() + 1) * ctx.rows]


@torch.no_grad()
def gather(t: torch.Tensor) -> torch.Tensor:
    """Every rank's ``t`` concatenated in rank order, without gradients (keys entering a queue)."""
    if world_size() == 1:
        return t
    out = [torch.empty_like(t) for _ in range(world_size())]
    dist.all_gather(out, t.contiguous())
    return torch.cat(out)


def offset(b: int) -> int:
    """Where this rank's ``b`` rows start in a gathered batch."""
    return rank() * b


def mean_across(t: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar over ranks (a loss to log): itself on one process."""
    if world_size() == 1:
        return t
    t = t.detach().clone()
    dist.all_reduce(t)
    return t / world_size()


def in_sync(module: nn.Module) -> bool:
    """Whether every rank holds the same parameters and buffers (checksums compared across ranks)."""
    if world_size() == 1:
        return True
    tensors = list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]
    s = torch.stack([t.detach().double().sum() for t in tensors]).sum().view(1)
    gathered = [torch.zeros_like(s) for _ in range(world_size())]
    dist.all_gather(gathered, s)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def configure(device: torch.device, deterministic: bool = False) -> None:
    """Process-wide numerics for training on ``device``. On CUDA: TF32 matmuls / convolutions and
    cuDNN's autotuner, unless ``deterministic``, which turns on torch's deterministic algorithms
    (an error where an op has none), deterministic cuDNN without autotuning and cuBLAS's fixed
    workspace: bit-exact reruns on the same GPU and software, at some speed."""
    torch.use_deterministic_algorithms(deterministic)  # off again for a later run in the same process
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    elif device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
