"""The utility of pretraining, U(n) = n̂/n − 1 (Newell & Deng, arXiv:2003.14323), as pure functions.

n̂ is the number of labels the scratch baseline needs to reach the pretrained model's metric at
n, read off the scratch curve (made monotone, then interpolated in log n by default or in linear
n as the original code did). Metrics are "higher is better".

Intervals: each curve point's mean (scratch and pretrained, per budget) is drawn from its
studentised sampling distribution, m + s/√k · t(k − 1) (k seeds, s their standard deviation), and U is
recomputed for every draw; the interval is the draws' 2.5–97.5 % percentiles. Below ``MIN_SEEDS``
seeds there is no interval ("too few seeds"). Measured coverage of the nominal 95 % interval on
simulated studies with a known U: ``tests/test_utility.py`` (≥ 90 % required; the README gives the
figures). A bootstrap over 2–5 seeds under-covers (78–90 % measured), so it is not used.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from .defaults import SCRATCH

OK, LOWER_BOUND, UNDEFINED = "ok", "lower_bound", "undefined"
INTERPOLATIONS = ("log", "linear")
MIN_SEEDS = 3  # fewer seeds per curve point: no interval
INTERVAL, TOO_FEW_SEEDS = "studentised", "too few seeds"  # the utility table's ``interval`` column


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
    v = np.asarray(scratch_values, dtype=float)[order]
    n_hat = float(labels_needed_many(n, v[None, :], np.array([[target]], dtype=float), interpolation)[0, 0])
    if math.isnan(n_hat):
        return math.nan, UNDEFINED
    return n_hat, LOWER_BOUND if target > monotone_curve(v)[-1] else OK


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


def labels_needed_many(budgets, scratch_curves: np.ndarray, targets: np.ndarray, interpolation: str = "log"):
    """:func:`labels_needed` for many draws at once: ``scratch_curves`` (D, B) at sorted ``budgets``
    (B,), ``targets`` (D, J) → n̂ (D, J), NaN where undefined (a lower bound counts as the largest budget)."""
    n = np.asarray(budgets, dtype=float)
    v = np.maximum.accumulate(np.asarray(scratch_curves, dtype=float), axis=1)
    t = np.asarray(targets, dtype=float)
    b = v.shape[1]
    vv = np.broadcast_to(v[:, None, :], (*t.shape, b))
    i = (vv >= t[..., None]).argmax(axis=2)
    below = np.clip(i - 1, 0, b - 1)
    v_i = np.take_along_axis(vv, i[..., None], 2)[..., 0]
    v_below = np.take_along_axis(vv, below[..., None], 2)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(v_i > v_below, (t - v_below) / (v_i - v_below), 1.0)
    x = np.log(n) if interpolation == "log" else n
    n_hat = x[below] + frac * (x[i] - x[below])
    n_hat = np.exp(n_hat) if interpolation == "log" else n_hat
    n_hat = np.where(i == 0, n[0], n_hat)
    n_hat = np.where(t > v[:, -1:], n[-1], n_hat)
    return np.where((t < v[:, :1]) | ~np.isfinite(t), np.nan, n_hat)


def mean_interval(values, level: float = 0.95) -> tuple[float, float]:
    """The t interval of the mean of per-seed ``values`` (NaN below ``MIN_SEEDS`` values)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if len(v) < MIN_SEEDS:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)


def _point_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Per budget: mean, standard deviation and number of seeds."""
    return df.groupby("label_budget")["value"].agg(mean="mean", sd="std", seeds="count").sort_index()


def _studentised_draws(stats: pd.DataFrame, draws: int, rng: np.random.Generator) -> np.ndarray:
    """(draws, B) curve means, each point m + s/√k · t(k − 1)."""
    k = stats.seeds.to_numpy(dtype=float)
    t = rng.standard_t(np.maximum(k - 1, 1), size=(draws, len(k)))
    return stats["mean"].to_numpy() + stats.sd.fillna(0).to_numpy() / np.sqrt(k) * t


def utility_interval(
    scratch: pd.DataFrame,
    pretrained: pd.DataFrame,
    interpolation: str = "log",
    draws: int = 1000,
    rng: np.random.Generator | None = None,
    level: float = 0.95,
):
    """(low, high) arrays of U's interval at each pretrained budget (NaN where the scratch curve or
    that point has fewer than ``MIN_SEEDS`` seeds), from per-seed long rows (label_budget, value)."""
    rng = rng or np.random.default_rng(0)
    s, p = _point_stats(scratch), _point_stats(pretrained)
    s_draws, p_draws = _studentised_draws(s, draws, rng), _studentised_draws(p, draws, rng)
    n = p.index.to_numpy(dtype=float)
    u = labels_needed_many(s.index.to_numpy(), s_draws, p_draws, interpolation) / n - 1.0
    a = 100 * (1 - level) / 2
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: undefined everywhere
        lo, hi = np.nanpercentile(u, a, axis=0), np.nanpercentile(u, 100 - a, axis=0)
    enough = (p.seeds.to_numpy() >= MIN_SEEDS) & (s.seeds.min() >= MIN_SEEDS)
    return np.where(enough, lo, np.nan), np.where(enough, hi, np.nan), np.minimum(p.seeds.to_numpy(), s.seeds.min())


CONTEXT = ("finetune_variant", "backbone", "width")  # scratch is matched within these, when present
# a pretrained curve is also one per dataset its backbone was pretrained on (the transfer study pretrains
# on several): scratch has none, so these split the pretrained curves only, never the scratch baseline
PRETRAINED_CONTEXT = ("pretrain_variant",)


def utility_table(
    results: pd.DataFrame,
    metric_of_task: dict[str, str],
    interpolation: str = "log",
    n_boot: int = 1000,
    seed: int = 0,
    baseline: str = SCRATCH,
    context: tuple[str, ...] = CONTEXT,
) -> pd.DataFrame:
    """Utility per (method, task, protocol, label_budget) of a long results table, with studentised
    95 % intervals (:func:`utility_interval`, ``n_boot`` draws; ``seeds``: the fewer of the point's and
    the scratch curve's seeds; ``interval``: "studentised", or "too few seeds" below ``MIN_SEEDS``).

    A pretrained curve is compared with the scratch curve of the same task and the same ``context``
    (the finetuning dataset variant, the backbone and its width, for the columns the table has):
    a ResNet50 is never measured against a ResNet9 baseline, nor one variant against another. A split
    backbone (CMC's ``resnet9_split``) counts as its family (``resnet9``): same width, same baseline.
    Pretrained curves are kept apart by ``pretrain_variant`` (the data the backbone saw), each against
    the same scratch curve."""
    ctx = [c for c in context if c in results.columns]
    pre = [c for c in PRETRAINED_CONTEXT if c in results.columns]
    results = results.fillna({c: "" for c in pre})
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
            s_mean = _point_stats(scratch)["mean"]
            others = part[part.method != baseline]
            for (method, protocol, *pre_key), grp in others.groupby(["method", "protocol", *pre], sort=True):
                p_mean = _point_stats(grp)["mean"]
                point = utility_curve(s_mean.index, s_mean.values, p_mean.index, p_mean.values, interpolation)
                lows, highs, seeds = utility_interval(scratch, grp, interpolation, n_boot, rng)
                for j, (n, m) in enumerate(p_mean.items()):
                    u, status = point[j]
                    lo, hi = lows[j], highs[j]
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
                            "seeds": int(seeds[j]),
                            "interval": INTERVAL if np.isfinite(lo) else TOO_FEW_SEEDS,
                            "metric": metric,
                            "value": m,
                            **dict(zip(ctx, key)),
                            **dict(zip(pre, pre_key)),
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
        "seeds",
        "interval",
        "metric",
        "value",
        *ctx,
        *pre,
    ]
    return pd.DataFrame(rows, columns=cols)
