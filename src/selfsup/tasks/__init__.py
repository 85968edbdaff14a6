"""Downstream tasks: one file each, each a head, a loss, targets from the labels and metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..registry import Registry


@dataclass(frozen=True)
class Task:
    name: str
    metric: str  # the headline metric (higher is better) used for utility
    head: Callable[[int], nn.Module]
    targets: Callable[[pd.DataFrame], np.ndarray]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    metrics: Callable[[torch.Tensor, torch.Tensor], dict[str, float]]
    dataset_set: str = "single"  # the dataset set whose labels the task reads


TASKS: Registry[Task] = Registry("task")


def get_task(name: str) -> Task:
    return TASKS.create(name)


def list_tasks() -> list[str]:
    return TASKS.names()


from . import classification, pose  # noqa: E402,F401  (registers)
