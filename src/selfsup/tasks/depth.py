"""Depth on the multi-object set: distance along the view axis (scene units; the backdrop included)
per feature-map cell (the mean over each 8×8 cell), L1 loss; δ < 1.25 accuracy (headline), abs-rel
and L1."""

from __future__ import annotations

import torch
from torch import nn

from . import TASKS, Task, grid_labels

MIN_DEPTH = 1e-3


def depth_metrics(pred: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    p, t = pred.reshape(y.shape).float().clamp_min(MIN_DEPTH), y.float()
    ratio = torch.maximum(p / t, t / p)
    return {
        "delta1": float((ratio < 1.25).float().mean()),
        "abs_rel": float(((p - t).abs() / t).mean()),
        "l1": float((p - t).abs().mean()),
    }


def depth_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (pred.reshape(y.shape) - y).abs().mean()


def depth_head(d: int) -> nn.Module:
    head = nn.Conv2d(d, 1, 1)
    nn.init.constant_(head.bias, 3.0)  # about the backdrop's distance: training starts at the right scale
    return head


@TASKS.register("depth")
def depth() -> Task:
    return Task(
        "depth",
        "delta1",
        depth_head,
        lambda ds: grid_labels(ds.dense["depth"], "mean"),
        depth_loss,
        depth_metrics,
        dataset_set="multi",
        dense=True,
        kind="regress",
        outputs=1,
    )
