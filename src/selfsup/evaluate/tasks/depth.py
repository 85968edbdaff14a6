"""Depth on the multi-object set: distance along the view axis (scene units) per feature-map cell
(the mean over each 8×8 cell), L1 loss over every cell (backdrop included).

The headline measures the objects, not the backdrop (≈ 90 % of the cells, at a nearly constant
distance): ``delta1`` (δ < 1.25), ``abs_rel`` and ``l1`` are over object cells (those whose centre
pixel is an object in the segmentation); ``*_all`` over every cell, for reference. The targets are
(N, 2, h, w): the depth map and that object mask."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from selfsup.evaluate.tasks import TASKS, Task, grid_labels

MIN_DEPTH = 1e-3
HEAD_INIT = 3.0  # about the backdrop's distance: training starts at the right scale


def depth_targets(ds) -> np.ndarray:
    depth = grid_labels(ds.dense["depth"], "mean")
    objects = grid_labels(ds.dense["segmentation"], "nearest") > 0
    return np.stack([depth, objects.astype(np.float32)], 1)


# what :func:`depth_metrics` returns: a share of cells (δ < 1.25) and two errors
_ERROR_RANGES = {"delta1": (0.0, 1.0), "abs_rel": (0.0, math.inf), "l1": (0.0, math.inf)}
RANGES = {**_ERROR_RANGES, **{f"{k}_all": v for k, v in _ERROR_RANGES.items()}}


def _errors(p: torch.Tensor, t: torch.Tensor) -> dict[str, float]:
    if t.numel() == 0:
        return {"delta1": float("nan"), "abs_rel": float("nan"), "l1": float("nan")}
    ratio = torch.maximum(p / t, t / p)
    return {
        "delta1": float((ratio < 1.25).float().mean()),
        "abs_rel": float(((p - t).abs() / t).mean()),
        "l1": float((p - t).abs().mean()),
    }


def depth_metrics(pred: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    t, objects = y[:, 0].float(), y[:, 1] > 0.5
    p = pred.reshape(t.shape).float().clamp_min(MIN_DEPTH)
    on_objects = _errors(p[objects], t[objects])
    return {**on_objects, **{f"{k}_all": v for k, v in _errors(p, t).items()}}


def depth_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (pred.reshape(y[:, 0].shape) - y[:, 0]).abs().mean()


def constant_chance(targets: np.ndarray) -> dict[str, float]:
    """Chance level: the best constant depth for δ < 1.25 on object cells (chosen on these very
    targets, so an upper bound of what any constant scores), the head's initial value among them."""
    y = torch.as_tensor(np.asarray(targets, dtype=np.float32))
    objects = y[:, 1] > 0.5
    candidates = [HEAD_INIT]
    if objects.any():
        candidates += torch.quantile(y[:, 0][objects], torch.linspace(0.02, 0.98, 49)).tolist()
    scores = [depth_metrics(torch.full_like(y[:, 0], c), y) for c in candidates]
    return max(scores, key=lambda m: -1 if np.isnan(m["delta1"]) else m["delta1"])


def depth_head(d: int) -> nn.Module:
    """Batch norm of the feature map (as every head: :func:`selfsup.evaluate.tasks.fc_head`), then a 1×1 convolution."""
    conv = nn.Conv2d(d, 1, 1)
    nn.init.constant_(conv.bias, HEAD_INIT)
    return nn.Sequential(nn.BatchNorm2d(d), conv)


@TASKS.register("depth")
def depth() -> Task:
    return Task(
        "depth",
        "delta1",
        depth_head,
        depth_targets,
        depth_loss,
        depth_metrics,
        RANGES,
        dataset_set="multi",
        label="dense",
        dense=True,
        kind="regress",
        outputs=1,
        chance=constant_chance,
        fit_target=lambda y: y[:, 0],
    )
