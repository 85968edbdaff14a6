"""Probes on frozen features: linear and k-nearest-neighbour, across label budgets and seeds.

Features come from the pretrained backbone in eval mode (batch norm at its pretrained running
statistics), without augmentation, once per split: pooled features for image-level tasks, every
location of the last feature map for dense tasks.

- ``linear``: for classification-type tasks a multinomial logistic regression (L2 penalty
  1/(2C)·‖W‖², intercept not penalised, the objective of scikit-learn's ``LogisticRegression``),
  solved to convergence with L-BFGS; for depth a ridge regression in closed form (scikit-learn's
  ``Ridge``). The penalty is picked from a small grid by the validation metric (held-out models).
- ``knn``: k = 20 nearest labelled training images, votes weighted by 1/distance (scikit-learn's
  ``weights="distance"``), cosine or Euclidean distance; image-level tasks only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from selfsup.core import checks
from selfsup.core.defaults import DEFAULT_BACKBONE, DEFAULT_BUDGETS, DEFAULT_COLOUR, DEFAULT_SEEDS, DEFAULT_WIDTH
from selfsup.core.errors import UserError
from selfsup.data.augment import map_batches
from selfsup.evaluate.sweep import Cell, Sweep, eval_batch, prepare, run_cells
from selfsup.pretrain.checkpoint import is_scratch, resolve_init

PROBES = ("linear", "knn")
KNN_METRICS = ("cosine", "euclidean")
C_GRID = (0.01, 0.1, 1.0, 10.0)  # inverse L2 strength of the logistic probe
ALPHA_GRID = (0.1, 1.0, 10.0, 100.0)  # ridge penalty of the regression probe


def fit_logistic(
    x: torch.Tensor, y: torch.Tensor, n_classes: int, c: float = 1.0, max_iter: int = 500, tol: float = 1e-10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression, min Σ_i CE(W x_i + b, y_i) + ‖W‖²/(2C), by L-BFGS in float64.
    Returns (W (K, D), b (K,))."""
    x, y = x.double(), y.long()
    w = torch.zeros(n_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1,
        max_iter=max_iter,
        tolerance_grad=tol,
        tolerance_change=tol * 1e-3,
        history_size=20,
        line_search_fn="strong_wolfe",
    )
    scale = 1.0 / len(x)  # a mean keeps the line search well scaled; the minimiser is the same

    def closure():
        opt.zero_grad()
        loss = scale * (F.cross_entropy(x @ w.t() + b, y, reduction="sum") + (w * w).sum() / (2 * c))
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def fit_ridge(x: torch.Tensor, y: torch.Tensor, alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """min ‖y − Xw − b‖² + α‖w‖² in closed form (intercept not penalised). Returns (w (D,), b ())."""
    x, y = x.double(), y.double()
    xm, ym = x.mean(0), y.mean()
    xc, yc = x - xm, y - ym
    w = torch.linalg.solve(xc.t() @ xc + alpha * torch.eye(x.shape[1], dtype=torch.float64), xc.t() @ yc)
    return w, ym - xm @ w


def knn_predict(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    query: torch.Tensor,
    n_classes: int,
    k: int = 20,
    metric: str = "cosine",
) -> torch.Tensor:
    """Class scores (Q, n_classes) of distance-weighted k-NN votes (weight 1/d); a query at distance 0
    from some training points takes only their votes, as scikit-learn does."""
    if metric == "cosine":
        d = 1 - F.normalize(query.double(), dim=1) @ F.normalize(train_x.double(), dim=1).t()
    else:
        d = torch.cdist(query.double(), train_x.double())
    d = d.clamp_min(0)
    k = min(k, len(train_x))
    dist, idx = d.topk(k, dim=1, largest=False)
    exact = dist <= 1e-12
    w = torch.where(exact.any(1, keepdim=True), exact.double(), 1 / dist.clamp_min(1e-300))
    scores = torch.zeros(len(query), n_classes, dtype=torch.float64)
    return scores.scatter_add_(1, train_y[idx].long(), w)


@torch.no_grad()
def features(backbone, images: np.ndarray, dense: bool, device, batch: int) -> torch.Tensor:
    """Frozen features on the CPU: (N, D) pooled, or (N, h, w, D) per location for dense tasks."""
    backbone.eval()
    return map_batches(
        (lambda x: backbone.feature_map(x).permute(0, 2, 3, 1)) if dense else backbone, images, device, batch
    )


def _rows(f: torch.Tensor) -> torch.Tensor:
    return f.reshape(-1, f.shape[-1])


def probe(
    task: str,
    data: str | Path,
    out: str | Path,
    init: str | Path,
    budgets: list[int] = DEFAULT_BUDGETS,
    seeds: list[int] = DEFAULT_SEEDS,
    protocol: str = "linear",
    knn_metric: str = "cosine",
    k: int = 20,
    progress: bool = True,
    verify: bool = False,
    all_labels: bool = False,
) -> pd.DataFrame:
    """Probe the frozen backbone in ``init`` on ``task`` at every label budget × seed; writes and returns
    ``OUT/results.csv`` (protocol ``linear`` or ``knn-cosine`` / ``knn-euclidean``). ``all_labels`` adds
    the whole train split as one more budget: the paper's Table 1 (linear evaluation on every labelled
    training image)."""
    if protocol not in PROBES:
        raise UserError(f"unknown probe {protocol!r}: choose from {', '.join(PROBES)}")
    if knn_metric not in KNN_METRICS:
        raise UserError(f"unknown kNN distance {knn_metric!r}: choose from {', '.join(KNN_METRICS)}")
    checks.numbers(k=k)
    if not init:
        raise UserError("a probe needs a pretrained backbone: give --init")
    init = resolve_init(init)
    if is_scratch(init):  # before any data is loaded
        raise UserError(f"{str(init)!r} is a scratch folder: a probe needs pretrained weights")
    out = checks.output_folder(out)
    # the backbone comes from init's meta.json: the defaults are placeholders prepare() overrides
    sweep = prepare(task, data, init, budgets, seeds, DEFAULT_BACKBONE, DEFAULT_WIDTH, DEFAULT_COLOUR, verify)
    t = sweep.task
    if all_labels and len(sweep.train_idx) not in budgets:
        budgets = [*budgets, len(sweep.train_idx)]
    if protocol == "knn" and (t.dense or t.kind != "classify"):
        raise UserError(f"the kNN probe is for image-level classification tasks, not {task!r}")
    name = protocol if protocol == "linear" else f"knn-{knn_metric}"
    backbone = sweep.pretrained.to(sweep.device)
    ds = sweep.ds
    feats = {
        split: features(backbone, ds.images[idx], t.dense, sweep.device, eval_batch(t))
        for split, idx in (("train", sweep.train_idx), ("val", sweep.val_idx), ("test", sweep.test_idx))
    }
    position = {i: j for j, i in enumerate(sweep.train_idx)}
    spec = sweep.spec(
        "probe",
        name,
        budgets,
        seeds,
        init=init,
        data=data,
        key={"k": k},
        code=__name__,
        frozen_blocks=4,
        bn="frozen",
        steps=0,
        steps_per_cell=1,
        seed_only_picks_subset=True,  # both probes are deterministic given the labelled subset
    )

    def cells(group: list[Cell], progress_cb) -> list[tuple[dict, list[dict]]]:
        return [(cell(c), []) for c in group]

    def cell(c: Cell) -> dict:
        subset = sweep.subset(c.budget, c.seed)
        rows = torch.as_tensor([position[i] for i in subset])
        x, y = feats["train"][rows], torch.from_numpy(sweep.targets[subset])
        if protocol == "knn":
            return _knn_metrics(sweep, x, y, feats["test"], knn_metric, k)
        return _linear_metrics(sweep, x, y, feats["val"], feats["test"])

    return run_cells(sweep, spec, out, cells, progress)


def _knn_metrics(sweep: Sweep, x, y, test_x, metric: str, k: int) -> dict:
    scores = knn_predict(x, y, test_x, sweep.task.outputs, k, metric)
    return sweep.task.metrics(scores, torch.from_numpy(sweep.targets[sweep.test_idx]))


def _linear_metrics(sweep: Sweep, x, y, val_x, test_x) -> dict:
    """Fit for every penalty on the grid, keep the best on val, report its test metrics."""
    t = sweep.task
    val_y = torch.from_numpy(sweep.targets[sweep.val_idx])
    test_y = torch.from_numpy(sweep.targets[sweep.test_idx])

    def predict(params, f):
        w, b = params
        flat = _rows(f).double()
        pred = flat @ w.t() + b if t.kind == "classify" else (flat @ w + b)[:, None]
        # back to the task's layout: (N, K) or (N, K, h, w) for dense tasks
        return pred.view(*f.shape[:-1], -1).permute(0, 3, 1, 2).float() if t.dense else pred.float()

    if t.kind == "classify":
        fits = [fit_logistic(_rows(x), y.reshape(-1), t.outputs, c) for c in C_GRID]
    else:
        fits = [fit_ridge(_rows(x), t.fit_target(y).reshape(-1).float(), a) for a in ALPHA_GRID]
    best = max(fits, key=lambda p: t.metrics(predict(p, val_x), val_y)[t.metric])
    return t.metrics(predict(best, test_x), test_y)
