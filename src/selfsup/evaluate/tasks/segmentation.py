"""Semantic segmentation on the multi-object set: 11 classes (background + 10) per feature-map cell
(16×16 for 128×128 images; the label of each 8×8 cell's centre pixel), per-cell cross-entropy.

The headline measures the objects, not the backdrop (≈ 90 % of the cells): ``miou`` is the mean IoU
over the object classes present (background excluded), ``object_accuracy`` the accuracy on object
cells. ``miou_all`` (background included) and ``pixel_accuracy`` (all cells) are kept for reference;
an all-background guess scores 0 on both headlines and ≈ 0.9 pixel accuracy."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from selfsup.evaluate.tasks import TASKS, Task, grid_labels

NUM_CLASSES = 11  # 0 = background, class_id + 1


def mean_iou(pred: torch.Tensor, y: torch.Tensor, classes=range(NUM_CLASSES)) -> float:
    """Mean over ``classes`` present in the prediction or the labels of |pred ∩ y| / |pred ∪ y|."""
    ious = []
    for c in classes:
        p, t = pred == c, y == c
        union = int((p | t).sum())
        if union:
            ious.append(int((p & t).sum()) / union)
    return float(sum(ious) / len(ious)) if ious else float("nan")


# what :func:`segmentation_metrics` returns: IoUs and accuracies, all shares
RANGES = {m: (0.0, 1.0) for m in ("miou", "object_accuracy", "miou_all", "pixel_accuracy")}


def segmentation_metrics(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    pred = logits.argmax(1)
    objects = y > 0
    return {
        "miou": mean_iou(pred, y, range(1, NUM_CLASSES)),
        "object_accuracy": float((pred[objects] == y[objects]).float().mean()) if objects.any() else float("nan"),
        "miou_all": mean_iou(pred, y),
        "pixel_accuracy": float((pred == y).float().mean()),
    }


def background_chance(targets: np.ndarray) -> dict[str, float]:
    """Chance level: background everywhere (the most frequent class of every cell)."""
    y = torch.as_tensor(np.asarray(targets)).long()
    return segmentation_metrics(F.one_hot(torch.zeros_like(y), NUM_CLASSES).permute(0, 3, 1, 2).float(), y)


@TASKS.register("segmentation")
def segmentation() -> Task:
    return Task(
        "segmentation",
        "miou",
        lambda d: nn.Sequential(nn.BatchNorm2d(d), nn.Conv2d(d, NUM_CLASSES, 1)),  # batch norm as every head
        lambda ds: grid_labels(ds.dense["segmentation"], "nearest").astype("int64"),
        F.cross_entropy,
        segmentation_metrics,
        RANGES,
        dataset_set="multi",
        label="dense",
        dense=True,
        outputs=NUM_CLASSES,
        chance=background_chance,
    )
