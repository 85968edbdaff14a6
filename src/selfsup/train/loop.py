"""The one training loop, shared by pretraining and finetuning.

An *objective* owns the trainable module and turns a batch of item indices into a loss; the loop
owns batching, the optimiser, the schedule, logging and checkpoints. An atomic checkpoint is
written after every epoch, and ``resume=True`` continues exactly where it stopped (model,
optimiser, RNG state, epoch), so a run killed with ``kill -9`` ends like an uninterrupted one.
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

from selfsup.core.errors import UserError
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


class Objective(Protocol):
    module: nn.Module  # every trainable parameter lives here

    def loss(self, idx: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of the batch of item indices ``idx`` (plus scalars to log)."""


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
    :mod:`selfsup.train.distributed`) every rank trains on its slice of each batch and gradients are
    averaged; rank 0 writes the checkpoint.

    Stacked replicas (:mod:`selfsup.train.stacked`): with ``replica_seeds`` (one per replica) ``n_items`` is
    a sequence of each replica's item count, every replica draws its batches and augmentation from its
    own generator seeded like a lone run with that seed, and ``objective.loss`` receives the lists of
    index batches and generators (its loss is the sum of the replicas' losses, so each replica gets
    its own gradient; AdamW is elementwise, so each trains as it would alone).
    """
    module = objective.module
    rank, world = distributed.rank(), distributed.world_size()
    distributed.broadcast_module(module)
    params = [p for p in module.parameters() if p.requires_grad]
    dev = next(module.parameters()).device
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if cfg.amp and dev.type == "cuda" else contextlib.nullcontext()
    )
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * cfg.steps_per_epoch
    warmup = int(cfg.warmup_epochs * cfg.steps_per_epoch)
    shape = SCHEDULES[cfg.schedule]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: shape(s, total, warmup))
    stacked = replica_seeds is not None
    if stacked and world > 1:
        raise UserError("stacked replicas train on one process: run them without torchrun")
    sizes = list(n_items) if stacked else [n_items]
    # batch indices (and, on one process, augmentation): one generator per replica
    gens = [torch.Generator().manual_seed(s) for s in (replica_seeds if stacked else [cfg.seed])]
    gen = gens[0]
    aug = gen if world == 1 else torch.Generator().manual_seed(cfg.seed * 7919 + rank + 1)
    after_step = getattr(module, "after_step", None)
    start, history = 0, []
    if resume and checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        if state.get("tag") != checkpoint_tag:
            raise UserError(f"checkpoint {str(checkpoint)!r} was written by a run with other settings: not resumed")
        module.load_state_dict(state["module"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        for g, g_state in zip(gens, state["generator"] if stacked else [state["generator"]]):
            g.set_state(g_state)
        if world > 1:
            aug.set_state(state["aug_generators"][rank])
        torch.set_rng_state(state["torch_rng"])
        start, history = state["epoch"], list(state["history"])

    flop_per_step = None
    for epoch in range(start, cfg.epochs):
        module.train()
        t0 = time.perf_counter()
        batches = [epoch_batches(n, cfg.batch_size, cfg.steps_per_epoch, g) for n, g in zip(sizes, gens)]
        loss_sum = torch.zeros((), device=dev)  # summed on the device: no host sync per step
        extra: dict[str, float] = {}
        for i in range(cfg.steps_per_epoch):
            # the cost in machine-independent terms: torch's flop counter watches this run's first step
            # (forward and backward; it only observes, the step is the same); stacked steps run under
            # vmap, which it does not follow, so they are not counted
            count = FlopCounterMode(display=False) if i == 0 and flop_per_step is None and not stacked else None
            with count or contextlib.nullcontext():
                with autocast:
                    if stacked:
                        loss, scalars = objective.loss([b[i] for b in batches], gens)
                    else:
                        loss, scalars = objective.loss(batches[0][i][rank::world], aug)
                opt.zero_grad(set_to_none=True)
                loss.backward()
            if count is not None:
                flop_per_step = count.get_total_flops()
            distributed.average_gradients(params)
            opt.step()
            sched.step()
            if after_step:
                after_step(epoch * cfg.steps_per_epoch + i + 1, total)
            loss_sum += loss.detach().float()
            for k, v in scalars.items():  # tensors stay on the device until the epoch ends
                extra[k] = extra.get(k, 0.0) + (v.detach().float() if torch.is_tensor(v) else float(v))
            if progress:
                progress(epoch * cfg.steps_per_epoch + i + 1, total)
        dt = time.perf_counter() - t0
        logs = {
            "loss": float(loss_sum) / cfg.steps_per_epoch / len(gens),  # stacked: the replicas' mean
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
        aug_states = distributed.all_gather_object(aug.get_state()) if world > 1 else None
        if checkpoint is not None and rank == 0:
            _save_checkpoint(
                checkpoint,
                {
                    "module": module.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "generator": [g.get_state() for g in gens] if stacked else gen.get_state(),
                    "aug_generators": aug_states,
                    "torch_rng": torch.get_rng_state(),
                    "epoch": epoch + 1,
                    "history": history,
                    "tag": checkpoint_tag,
                },
            )
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
