"""Semantic segmentation on the multi-object set: 11 classes (background + 10) per feature-map cell
(16×16 for 128×128 images; the label of each 8×8 cell's centre pixel), per-cell cross-entropy,
pixel accuracy and mean IoU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import TASKS, Task, grid_labels

NUM_CLASSES = 11  # 0 = background, class_id + 1


def mean_iou(pred: torch.Tensor, y: torch.Tensor, num_classes: int = NUM_CLASSES) -> float:
    """Mean over classes present in the prediction or the labels of |pred ∩ y| / |pred ∪ y|."""
    ious = []
    for c in range(num_classes):
        p, t = pred == c, y == c
        union = int((p | t).sum())
        if union:
            ious.append(int((p & t).sum()) / union)
    return float(sum(ious) / len(ious)) if ious else float("nan")


def segmentation_metrics(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    pred = logits.argmax(1)
    return {"miou": mean_iou(pred, y), "pixel_accuracy": float((pred == y).float().mean())}


@TASKS.register("segmentation")
def segmentation() -> Task:
    return Task(
        "segmentation",
        "miou",
        lambda d: nn.Conv2d(d, NUM_CLASSES, 1),
        lambda ds: grid_labels(ds.dense["segmentation"], "nearest").astype("int64"),
        F.cross_entropy,
        segmentation_metrics,
        dataset_set="multi",
        dense=True,
        outputs=NUM_CLASSES,
    )
