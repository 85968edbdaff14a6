"""The utility of pretraining, U(n) = n̂/n − 1 (Newell & Deng, arXiv:2003.14323), as pure functions.

n̂ is the number of labels the scratch baseline needs to reach the pretrained model's metric at
n, read off the scratch curve (made monotone, then interpolated in log n by default or in linear
n as the original code did). Metrics are "higher is better".
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .defaults import SCRATCH

OK, LOWER_BOUND, UNDEFINED = "ok", "lower_bound", "undefined"
INTERPOLATIONS = ("log", "linear")


def monotone_curve(values) -> np.ndarray:
    """The scratch curve made non-decreasing in n (running maximum): more labels never hurt."""
    return np.maximum.accumulate(np.asarray(values, dtype=float))


def labels_needed(budgets, scratch_values, target: float, interpolation: str = "log") -> tuple[float, str]:
    """n̂ and a status: ``ok``; ``lower_bound`` when ``target`` beats the best scratch result (n̂ is
    then the largest budget, a lower bound); ``undefined`` when it is below the smallest budget's."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, not {interpolation!r}")
    order = np.argsort(budgets)
    n = np.asarray(budgets, dtype=float)[order]
    v = monotone_curve(np.asarray(scratch_values, dtype=float)[order])
    if not np.isfinite(target):
        return math.nan, UNDEFINED
    if target > v[-1]:
        return float(n[-1]), LOWER_BOUND
    if target < v[0]:
        return math.nan, UNDEFINED
    i = int(np.argmax(v >= target))
    if i == 0:
        return float(n[0]), OK
    frac = (target - v[i - 1]) / (v[i] - v[i - 1])
    if interpolation == "log":
        return float(math.exp(math.log(n[i - 1]) + frac * (math.log(n[i]) - math.log(n[i - 1])))), OK
    return float(n[i - 1] + frac * (n[i] - n[i - 1])), OK


def utility(n: float, n_hat: float) -> float:
    """U(n) = n̂/n − 1: 0 means no labels saved, 4 means scratch needs 5× the labels."""
    return n_hat / n - 1.0


def utility_curve(
    budgets, scratch_values, pretrained_budgets, pretrained_values, interpolation: str = "log"
) -> list[tuple[float, str]]:
    """(U, status) at each pretrained budget against one scratch curve (both given as means)."""
    out = []
    for n, m in zip(pretrained_budgets, pretrained_values):
        n_hat, status = labels_needed(budgets, scratch_values, m, interpolation)
        out.append((utility(n, n_hat) if status != UNDEFINED else math.nan, status))
    return out


def _seed_means(df: pd.DataFrame, rng: np.random.Generator | None) -> pd.Series:
    """Mean value per budget over seeds; with ``rng``, over a bootstrap resample of the seeds."""

    def agg(vals: np.ndarray) -> float:
        return float(np.mean(vals if rng is None else rng.choice(vals, size=len(vals), replace=True)))

    return df.groupby("label_budget")["value"].apply(lambda s: agg(s.to_numpy())).sort_index()


CONTEXT = ("finetune_variant", "backbone", "width")  # scratch is matched within these, when present


def utility_table(
    results: pd.DataFrame,
    metric_of_task: dict[str, str],
    interpolation: str = "log",
    n_boot: int = 1000,
    seed: int = 0,
    baseline: str = SCRATCH,
    context: tuple[str, ...] = CONTEXT,
) -> pd.DataFrame:
    """Utility per (method, task, protocol, label_budget) of a long results table, with bootstrap
    95 % intervals over seeds (scratch and pretrained seeds resampled independently).

    A pretrained curve is compared with the scratch curve of the same task and the same ``context``
    (the finetuning dataset variant, the backbone and its width, for the columns the table has):
    a ResNet50 is never measured against a ResNet9 baseline, nor one variant against another. A split
    backbone (CMC's ``resnet9_split``) counts as its family (``resnet9``): same width, same baseline."""
    ctx = [c for c in context if c in results.columns]
    if "backbone" in ctx:
        results = results.assign(backbone=results["backbone"].astype(str).str.removesuffix("_split"))
    rows = []
    rng = np.random.default_rng(seed)
    for task, metric in metric_of_task.items():
        sel = results[(results.task == task) & (results.metric == metric)]
        groups = sel.groupby(ctx, dropna=False, sort=True) if ctx else [((), sel)]
        for key, part in groups:
            key = key if isinstance(key, tuple) else (key,)
            scratch = part[part.method == baseline]
            if scratch.empty:
                continue
            s_mean = _seed_means(scratch, None)
            others = part[part.method != baseline]
            for (method, protocol), grp in others.groupby(["method", "protocol"], sort=True):
                p_mean = _seed_means(grp, None)
                point = utility_curve(s_mean.index, s_mean.values, p_mean.index, p_mean.values, interpolation)
                boots = np.full((n_boot, len(p_mean)), np.nan)
                enough_seeds = scratch.seed.nunique() > 1 or grp.seed.nunique() > 1
                for b in range(n_boot if enough_seeds else 0):
                    sb, pb = _seed_means(scratch, rng), _seed_means(grp, rng)
                    boots[b] = [u for u, _ in utility_curve(sb.index, sb.values, pb.index, pb.values, interpolation)]
                for j, (n, m) in enumerate(p_mean.items()):
                    u, status = point[j]
                    finite = boots[:, j][np.isfinite(boots[:, j])]
                    lo, hi = np.percentile(finite, [2.5, 97.5]) if len(finite) else (math.nan, math.nan)
                    rows.append(
                        {
                            "method": method,
                            "task": task,
                            "protocol": protocol,
                            "label_budget": int(n),
                            "utility": u,
                            "ci_low": float(lo),
                            "ci_high": float(hi),
                            "status": status,
                            "metric": metric,
                            "value": m,
                            **dict(zip(ctx, key)),
                        }
                    )
    cols = [
        "method",
        "task",
        "protocol",
        "label_budget",
        "utility",
        "ci_low",
        "ci_high",
        "status",
        "metric",
        "value",
        *ctx,
    ]
    return pd.DataFrame(rows, columns=cols)
