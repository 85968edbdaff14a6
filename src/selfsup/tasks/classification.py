"""Object classification: 10 classes, cross-entropy, accuracy."""

import torch
import torch.nn.functional as F
from torch import nn

from . import TASKS, Task

NUM_CLASSES = 10


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    return {"accuracy": float((logits.argmax(1) == y).float().mean())}


@TASKS.register("classification")
def classification() -> Task:
    return Task(
        "classification",
        "accuracy",
        lambda d: nn.Linear(d, NUM_CLASSES),
        lambda ds: ds.labels["class_id"].to_numpy(),
        F.cross_entropy,
        accuracy,
        outputs=NUM_CLASSES,
    )
