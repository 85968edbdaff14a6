"""Downstream tasks: one file each, each a head, a loss, targets from the dataset and metrics.

Image-level tasks (classification, pose) read the backbone's pooled features; dense tasks
(segmentation, depth) read its last feature map before pooling (16×16 for 128×128 inputs) and
predict one value per map location, against labels reduced to that grid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from selfsup.core.registry import Registry

if TYPE_CHECKING:
    from selfsup.data.dataset import Dataset

STRIDE = 8  # input pixels per feature-map cell of every backbone


@dataclass(frozen=True)
class Task:
    name: str
    metric: str  # the headline metric (higher is better) used for utility
    head: Callable[[int], nn.Module]
    targets: Callable[[Dataset], np.ndarray]  # one target (or target map) per image of the dataset
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    metrics: Callable[[torch.Tensor, torch.Tensor], dict[str, float]]
    # every metric ``metrics`` returns → the (low, high) range of its values (inclusive): what a results
    # row of the task may hold (``selfsup report`` refuses a value no run could produce)
    ranges: dict[str, tuple[float, float]]
    dataset_set: str = "single"  # the dataset set whose labels the task reads
    dense: bool = False  # predicts on the feature map, not the pooled features
    kind: str = "classify"  # "classify" (targets are class ids) or "regress" (real values)
    outputs: int = 1  # classes, or values per location
    # what a constant predictor scores on these targets (the chance level every headline is read against)
    chance: Callable[[np.ndarray], dict[str, float]] | None = None
    # the values a regression probe fits, from the targets (depth's targets carry an object mask too)
    fit_target: Callable[[torch.Tensor], torch.Tensor] = lambda y: y
    # the targets of the left-right mirrored images (None: a dense target map flips along its last
    # axis, the width; an image-level target is unchanged, unless the task says otherwise: pose)
    mirror: Callable[[torch.Tensor], torch.Tensor] | None = None
    one_class_hint: str = ""  # why a dataset may hold one class only, and what to do (the error says it)
    # the kind of label the task reads: "class", "pose" or "dense"; an imported dataset lists the kinds its
    # source has in its manifest ("labels"), a render has them all
    label: str = "class"

    def mirrored(self, y: torch.Tensor) -> torch.Tensor:
        """The targets ``y`` of the same images flipped horizontally: labels follow the flip."""
        if self.mirror is not None:
            return self.mirror(y)
        return y.flip(-1) if self.dense else y

    def strata(self, targets: np.ndarray) -> np.ndarray:
        """What label budgets balance over: the class of image-level classification tasks, nothing
        (one stratum) for dense tasks."""
        return targets if not self.dense and self.kind == "classify" else np.zeros(len(targets), np.int64)

    def chance_metrics(self, targets: np.ndarray, train: np.ndarray | None = None) -> dict[str, float]:
        """The task's metrics for a constant predictor on ``targets`` (empty if undefined): for an
        image-level classification, one that knows only the prior of the ``train`` labels, if given."""
        if not self.chance:
            return {}
        return (
            self.chance(targets, train)
            if train is not None and self.kind == "classify" and not self.dense
            else self.chance(targets)
        )


TASKS: Registry[Task] = Registry("task")


def get_task(name: str) -> Task:
    return TASKS.create(name)


LABEL_KINDS = ("class", "pose", "dense")


def task_for(name: str, ds: Dataset) -> Task:
    """Task ``name`` on dataset ``ds``: with the dataset's own number of classes (an imported folder has
    its own), or a one-line error when the dataset lacks the labels the task reads."""
    from selfsup.core.errors import UserError

    t = get_task(name)
    has = ds.manifest.get("labels", LABEL_KINDS)
    if t.label not in has:
        source = ds.manifest.get("params", {}).get("source", "its source")
        raise UserError(
            f"task {name!r} needs {t.label} labels, which dataset {str(ds.path)!r} (imported from {source}) "
            f"does not have: it holds {', '.join(has)} labels only"
        )
    classes = ds.manifest.get("classes")
    if name == "classification" and classes and len(classes) != t.outputs:
        t = TASKS.create(name, classes=len(classes))
    return t


def list_tasks() -> list[str]:
    return TASKS.names()


def fc_head(outputs: int):
    """The image-level head of the paper's ResNet9: two fully connected layers after the last block
    (hidden width = the pooled feature width), so ``frozen-3`` is "slightly more expressive than the
    linear evaluation" (§6). A batch norm standardises the pooled features first, as the 2025
    protocol study's probes do: without it, the head alone (``frozen-3``) trained for 240 steps on a
    rotation backbone's raw features (mean 4.5, s.d. 2.6) reached 0.15 test accuracy where a linear
    probe solved to convergence reaches 0.42; with it, 0.35."""

    def head(d: int) -> nn.Module:
        return nn.Sequential(nn.BatchNorm1d(d), nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, outputs))

    return head


def grid_labels(maps: np.ndarray, reduce: str) -> np.ndarray:
    """(N, H, W) per-pixel labels → (N, H/8, W/8) on the feature-map grid: the centre pixel of each
    8×8 cell (``nearest``, for class ids) or the cell's mean (``mean``, for depth)."""
    n, h, w = maps.shape
    if reduce == "nearest":
        return np.ascontiguousarray(maps[:, STRIDE // 2 :: STRIDE, STRIDE // 2 :: STRIDE])
    return maps.astype(np.float32).reshape(n, h // STRIDE, STRIDE, w // STRIDE, STRIDE).mean((2, 4))


from selfsup.evaluate.tasks import classification, depth, pose, segmentation  # noqa: E402,F401  (registers)
