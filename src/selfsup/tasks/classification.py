"""Object classification: 10 classes, cross-entropy, accuracy."""

import numpy as np
import torch
import torch.nn.functional as F

from . import TASKS, Task, fc_head

NUM_CLASSES = 10


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    return {"accuracy": float((logits.argmax(1) == y).float().mean())}


def majority_chance(classes: int):
    """Chance level of an image-level classification: always predicting the most frequent class."""

    def chance(targets: np.ndarray) -> dict[str, float]:
        y = torch.as_tensor(np.asarray(targets)).long()
        major = int(torch.bincount(y, minlength=classes).argmax())
        return accuracy(F.one_hot(torch.full_like(y, major), classes).float(), y)

    return chance


@TASKS.register("classification")
def classification() -> Task:
    return Task(
        "classification",
        "accuracy",
        fc_head(NUM_CLASSES),
        lambda ds: ds.labels["class_id"].to_numpy(),
        F.cross_entropy,
        accuracy,
        outputs=NUM_CLASSES,
        chance=majority_chance(NUM_CLASSES),
    )
