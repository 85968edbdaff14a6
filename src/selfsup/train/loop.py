"""The one training loop, shared by pretraining and finetuning.

An *objective* owns the trainable module and turns a batch of item indices into a loss; the loop
owns batching, the optimiser, the schedule, logging and checkpoints. An atomic checkpoint is
written after every epoch, and ``resume=True`` continues exactly where it stopped (model,
optimiser, RNG state, epoch), so a run killed with ``kill -9`` ends like an uninterrupted one.

Divergence is decided here, once, for every run (:func:`diverged`): after each epoch, a loss that is
not finite, or an epoch's mean loss above :data:`DIVERGENCE_FACTOR` times the loss of the run's first
step (the untrained model's: where it started; at least :data:`DIVERGENCE_FLOOR`), stops the run with
:class:`~selfsup.core.errors.Diverged` before that epoch is validated or checkpointed, and its
checkpoint is deleted: a diverged run leaves no result, no backbone and no checkpoint to resume.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from selfsup.core.errors import Diverged, UserError
from selfsup.data.augment import Draws
from selfsup.train import distributed
from selfsup.train.schedule import SCHEDULES, epoch_batches


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    steps_per_epoch: int
    batch_size: int
    lr: float = 1e-3
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    seed: int = 0
    schedule: str = "cosine"  # after the warm-up: "cosine" or "linear" decay to 0
    amp: bool = True  # bf16 autocast on CUDA (ignored on the CPU, where fp32 is faster here)
    compile: bool = False  # torch.compile the whole step (the objective's forward: networks, targets, loss)
    deterministic: bool = False  # torch's deterministic algorithms (see distributed.configure)


class Objective(Protocol):
    module: nn.Module  # every trainable parameter lives here

    def loss(self, idx: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of the batch of item indices ``idx`` (plus scalars to log)."""


DIVERGENCE_FACTOR = 10.0  # an epoch's mean loss this many times the first step's: diverged


DIVERGENCE_FLOOR = 1.0  # the start is taken as at least this: a first step that is nearly solved is no scale


def diverged(epoch_mean: float, first_step: float) -> str | None:
    """Why a run whose first step had loss ``first_step`` has diverged when an epoch's mean loss is
    ``epoch_mean``, or ``None`` when it has not. Every loss here is ≥ 0 (cross-entropies, squared or
    absolute errors, KL terms, 2 − 2·cos) and of order 1 or more at the start, so a factor over the
    start is a blow-up; a start below :data:`DIVERGENCE_FLOOR` counts as the floor (CMC's first step
    with a batch of 2 and an empty queue scores ln 2 per view, its full queue up to ln 1026: no blow-up)."""
    if not math.isfinite(epoch_mean):
        return f"the loss is {epoch_mean}"
    if epoch_mean > DIVERGENCE_FACTOR * max(first_step, DIVERGENCE_FLOOR):
        factor = f"{DIVERGENCE_FACTOR:g}×"
        return f"the epoch's mean loss {epoch_mean:.3g} is over {factor} the first step's {first_step:.3g}"
    return None


COMPILE_BACKEND = "inductor"  # torch.compile's default; bench/gpu_check.py's CPU dry run traces with "eager"


def default_device() -> torch.device:
    """This process's device: cuda:LOCAL_RANK where it has a GPU of its own (so ``finetune --shard``
    jobs started side by side with LOCAL_RANK set spread over the GPUs), else the CPU."""
    return distributed.device()


class _Step(nn.Module):
    """The objective as a module whose forward is the loss: what DistributedDataParallel wraps (it
    must see the call to hook the backward) and what ``compile`` compiles."""

    def __init__(self, objective: Objective):
        super().__init__()
        self.net = objective.module
        self._objective = [objective]  # in a list: not a submodule

    def forward(self, idx, generator):
        return self._objective[0].loss(idx, generator)


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)  # never a half-written checkpoint


def fit(
    objective: Objective,
    n_items: int | Sequence[int],
    cfg: TrainConfig,
    on_epoch: Callable[[int, dict], dict] | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
    progress: Callable[[int, int], None] | None = None,
    checkpoint_tag: dict | None = None,
    replica_seeds: Sequence[int] | None = None,
) -> list[dict]:
    """Train ``objective`` for ``cfg.epochs`` × ``cfg.steps_per_epoch`` steps; returns per-epoch logs.

    ``on_epoch(epoch, logs)`` may evaluate and return more scalars to log; ``progress(step, total)``
    is called after every step. ``checkpoint_tag`` (the run's settings) is saved in the checkpoint, and a
    checkpoint with another tag is never resumed (an error). Under ``torchrun`` (see
    :mod:`selfsup.train.distributed`) the step runs under DistributedDataParallel, every rank trains
    on its contiguous slice of each batch (``cfg.batch_size`` is the global batch) and rank 0 writes
    the checkpoint.

    Stacked replicas (:mod:`selfsup.train.stacked`): with ``replica_seeds`` (one per replica) ``n_items`` is
    a sequence of each replica's item count, every replica draws its batches and augmentation from its
    own generator seeded like a lone run with that seed, and ``objective.loss`` receives the lists of
    index batches and generators and returns the vector of the replicas' losses (the loop steps on
    their sum, so each replica gets its own gradient; AdamW is elementwise, so each trains as it would
    alone, and each is checked for divergence on its own: ``Diverged.replica`` says which).

    A diverged run (:func:`diverged`) raises :class:`~selfsup.core.errors.Diverged` naming the epoch and
    the learning rate; its checkpoint is deleted.
    """
    module = objective.module
    rank, world = distributed.rank(), distributed.world_size()
    stacked = replica_seeds is not None
    if stacked and world > 1:
        raise UserError(
            "stacked replicas train on one process: run them without torchrun (torch.func with DDP's buffer "
            "broadcast and vmap with SyncBatchNorm do not work: pytorch#130932, #91629)"
        )
    if cfg.batch_size % world:
        raise UserError(f"batch size {cfg.batch_size} does not split evenly over {world} ranks")
    local_batch = cfg.batch_size // world
    dev = next(module.parameters()).device
    distributed.configure(dev, cfg.deterministic)
    module = distributed.sync_batchnorm(module)
    params = [p for p in module.parameters() if p.requires_grad]
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if cfg.amp and dev.type == "cuda" else contextlib.nullcontext()
    )
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=dev.type == "cuda" or None)
    total = cfg.epochs * cfg.steps_per_epoch
    warmup = int(cfg.warmup_epochs * cfg.steps_per_epoch)
    shape = SCHEDULES[cfg.schedule]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: shape(s, total, warmup))
    sizes = list(n_items) if stacked else [n_items]
    # batch indices and augmentation: one generator per replica; under data parallel every rank holds
    # the same one and keeps its own slice of each batch and of its random draws
    gens = [torch.Generator().manual_seed(s) for s in (replica_seeds if stacked else [cfg.seed])]
    gen = gens[0]
    aug = Draws(gen, rank, world)
    after_step = getattr(module, "after_step", None)
    start, history = 0, []
    first_step: torch.Tensor | None = None  # the loss of the run's first step (per replica): the reference
    first_local = False
    if resume and checkpoint is not None and checkpoint.exists():
        # on the CPU first (generator states must be; each rank's module and optimiser take their own device)
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if state.get("tag") != checkpoint_tag:
            raise UserError(f"checkpoint {str(checkpoint)!r} was written by a run with other settings: not resumed")
        module.load_state_dict(state["module"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        for g, g_state in zip(gens, state["generator"] if stacked else [state["generator"]]):
            g.set_state(g_state)
        torch.set_rng_state(state["torch_rng"])
        if dev.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], dev)
        start, history = state["epoch"], list(state["history"])
        if state.get("first_step_loss") is not None:
            first_step = torch.tensor(state["first_step_loss"], dtype=torch.float32, device=dev)
    step = distributed.wrap(_Step(objective))  # DDP starts every rank from rank 0's weights
    if cfg.compile:
        step = torch.compile(step, backend=COMPILE_BACKEND)

    flop_per_step = None
    for epoch in range(start, cfg.epochs):
        module.train()
        t0 = time.perf_counter()
        # the epoch's indices on the device at once (one copy, not one per step)
        batches = [epoch_batches(n, cfg.batch_size, cfg.steps_per_epoch, g).to(dev) for n, g in zip(sizes, gens)]
        loss_sum = torch.zeros(len(gens) if stacked else (), device=dev)  # summed on the device: no sync per step
        extra: dict[str, float] = {}
        for i in range(cfg.steps_per_epoch):
            # the cost in machine-independent terms: torch's flop counter watches this run's first step
            # (forward and backward; it only observes, the step is the same); stacked steps run under
            # vmap, which it does not follow, so they are not counted
            count = FlopCounterMode(display=False) if i == 0 and flop_per_step is None and not stacked else None
            with count or contextlib.nullcontext():
                with autocast:
                    if stacked:
                        loss, scalars = step([b[i] for b in batches], gens)
                    else:
                        loss, scalars = step(batches[0][i][rank * local_batch : (rank + 1) * local_batch], aug)
                opt.zero_grad(set_to_none=True)
                (loss.sum() if stacked else loss).backward()  # under DDP the gradients are averaged over ranks here
            if count is not None:
                flop_per_step = count.get_total_flops()
            opt.step()
            sched.step()
            if after_step:
                after_step(epoch * cfg.steps_per_epoch + i + 1, total)
            loss_sum += loss.detach().float()
            if first_step is None:
                first_step, first_local = loss.detach().float().clone(), True
            for k, v in scalars.items():  # tensors stay on the device until the epoch ends
                extra[k] = extra.get(k, 0.0) + (v.detach().float() if torch.is_tensor(v) else float(v))
            if progress:
                progress(epoch * cfg.steps_per_epoch + i + 1, total)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)  # the epoch's work done, not only queued, before it is timed
        dt = time.perf_counter() - t0
        loss_sum = distributed.mean_across(loss_sum)
        if first_local:  # this rank's: the mean over ranks, as the epoch's loss
            first_step, first_local = distributed.mean_across(first_step), False
        means, firsts = (loss_sum / cfg.steps_per_epoch).reshape(-1).tolist(), first_step.reshape(-1).tolist()
        for r, (mean, first) in enumerate(zip(means, firsts)):
            reason = diverged(mean, first)
            if reason is not None:  # every rank sees the same means: all raise together
                if checkpoint is not None and rank == 0:
                    checkpoint.unlink(missing_ok=True)
                raise Diverged(
                    f"training diverged in epoch {epoch + 1} of {cfg.epochs} with lr {cfg.lr:g}: {reason}; "
                    "lower the learning rate",
                    replica=r if stacked else None,
                )
        logs = {
            "loss": float(loss_sum.sum()) / cfg.steps_per_epoch / len(gens),  # stacked: the replicas' mean
            "lr": opt.param_groups[0]["lr"],
            "images_per_s": cfg.steps_per_epoch * cfg.batch_size * len(gens) / dt,
            "epoch_time_s": dt,
            # images through the training step this epoch (all replicas) and the FLOPs that took
            "train_images": cfg.steps_per_epoch * cfg.batch_size * len(gens),
            "train_gflop": flop_per_step * cfg.steps_per_epoch / 1e9 if flop_per_step is not None else float("nan"),
            **{k: float(v) / cfg.steps_per_epoch for k, v in extra.items()},
        }
        if on_epoch:
            logs.update(on_epoch(epoch, logs) or {})
        history.append(logs)
        if checkpoint is not None and rank == 0:
            _save_checkpoint(
                checkpoint,
                {
                    "module": module.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "generator": [g.get_state() for g in gens] if stacked else gen.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
                    "epoch": epoch + 1,
                    "history": history,
                    "first_step_loss": first_step.reshape(-1).tolist(),
                    "tag": checkpoint_tag,
                },
            )
        distributed.barrier()  # no rank runs ahead of rank 0's checkpoint
    distributed.broadcast_buffers(module)
    return history


def cost_totals(history: list[dict]) -> dict[str, float]:
    """A run's cost in machine-independent terms from its per-epoch logs (:func:`fit`): images through
    the training step and the GFLOPs that took (left out where they were not counted). Named apart from
    the per-epoch ``train_images`` / ``train_gflop``: MLflow keeps a metric's value at its last step,
    so a total logged under the per-epoch name would read back as the last epoch's."""
    out = {"total_train_images": float(sum(h.get("train_images", 0) for h in history))}
    flops = [h.get("train_gflop", float("nan")) for h in history]
    if flops and all(math.isfinite(f) for f in flops):
        out["total_train_gflop"] = float(sum(flops))
    return out
