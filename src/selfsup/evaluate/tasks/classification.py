"""Object classification: 10 classes (an imported image folder: its own), cross-entropy, accuracy."""

import numpy as np
import torch
import torch.nn.functional as F

from selfsup.evaluate.tasks import TASKS, Task, fc_head

NUM_CLASSES = 10


ACCURACY_RANGE = {"accuracy": (0.0, 1.0)}  # what :func:`accuracy` returns


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    return {"accuracy": float((logits.argmax(1) == y).float().mean())}


def majority_chance(classes: int):
    """Chance level of an image-level classification: what a learner that knows only the training
    prior scores on the test ``targets``: it predicts the class most frequent in ``train`` (ties, as
    in class-balanced label budgets, broken at random: the mean test share of the tied classes). With
    no ``train`` given, the test split's own majority class (the best constant predictor)."""

    def chance(targets: np.ndarray, train: np.ndarray | None = None) -> dict[str, float]:
        y = torch.as_tensor(np.asarray(targets)).long()
        if train is None:
            major = int(torch.bincount(y, minlength=classes).argmax())
            return accuracy(F.one_hot(torch.full_like(y, major), classes).float(), y)
        prior = np.bincount(np.asarray(train, dtype=np.int64), minlength=classes)
        share = np.bincount(y.numpy(), minlength=classes) / max(len(y), 1)
        return {"accuracy": float(share[prior == prior.max()].mean())}

    return chance


@TASKS.register("classification")
def classification(classes: int = NUM_CLASSES) -> Task:
    return Task(
        "classification",
        "accuracy",
        fc_head(classes),
        lambda ds: ds.labels["class_id"].to_numpy(),
        F.cross_entropy,
        accuracy,
        ACCURACY_RANGE,
        outputs=classes,
        chance=majority_chance(classes),
    )
