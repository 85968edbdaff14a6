"""Learning-rate schedules and batch orders as pure functions."""

from __future__ import annotations

import math

import torch

from selfsup.core.errors import UserError


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the base learning rate: linear warm-up, then cosine decay to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def warmup_linear(step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the base learning rate: linear warm-up, then linear decay to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, 1 - (step - warmup_steps) / max(1, total_steps - warmup_steps))


SCHEDULES = {"cosine": warmup_cosine, "linear": warmup_linear}


def check_schedule(name: str) -> str:
    if name not in SCHEDULES:
        raise UserError(f"unknown schedule {name!r}: choose from {', '.join(SCHEDULES)}")
    return name


def epoch_batches(n_items: int, batch_size: int, steps: int, generator: torch.Generator) -> torch.Tensor:
    """(steps, batch_size) indices into ``n_items``: shuffled passes over the items, repeated as
    often as needed, so a small labelled subset fills the same number of steps as a large one."""
    need = steps * batch_size
    passes = [torch.randperm(n_items, generator=generator) for _ in range(-(-need // n_items))]
    return torch.cat(passes)[:need].view(steps, batch_size)
