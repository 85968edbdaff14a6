"""The utility of pretraining, U(n) = n̂/n − 1 (Newell & Deng, arXiv:2003.14323), as pure functions.

n̂ is the number of labels the scratch baseline needs to reach the pretrained model's metric at
n, read off the scratch curve (made monotone, then interpolated in log n by default or in linear
n as the original code did). Metrics are "higher is better".

Intervals: each curve point's mean (scratch and pretrained, per budget) is drawn from its
studentised sampling distribution, m + s/√k · t(k − 1) (k seeds, s their standard deviation), and U is
recomputed for every draw; the interval is the draws' 2.5–97.5 % percentiles. A draw whose pretrained
mean lies outside its scratch curve's range is *censored*, never dropped: below the curve n̂ < n_min,
so U < n_min/n − 1, and the draw counts as −∞; above it n̂ > n_max, U > n_max/n − 1, and it counts
as +∞. So an end of the interval is open (−∞ or +∞, ``interval`` = ``censored_below`` /
``censored_above``) when more than 2.5 % of the draws lie beyond the curve on that side, and an end
that falls among censored draws on the other side is the censoring bound (n_min/n − 1 or
n_max/n − 1). An interval excludes 0 only when at least 97.5 % of all draws are placed on one
side of it. Below ``MIN_SEEDS`` seeds there is no interval ("too few seeds"). Measured coverage of
the nominal 95 % interval on simulated studies with a known U (0 and 1, at both ends of the curve
and inside it, 3 and 5 seeds): ``tests/analyse/test_utility.py`` (≥ 90 % required; the README gives the
figures). A bootstrap over 2–5 seeds under-covers (78–90 % measured), so it is not used.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from selfsup.core.defaults import SCRATCH
from selfsup.core.schema import CONTEXT, PRETRAINED_CONTEXT

OK, LOWER_BOUND, UNDEFINED = "ok", "lower_bound", "undefined"
INTERPOLATIONS = ("log", "linear")
MIN_SEEDS = 3  # fewer seeds per curve point: no interval
# the utility table's ``interval`` column: both ends finite; the lower end open (−∞: more than 2.5 % of the
# draws fell below the scratch curve); the upper end open (+∞: above it); both open; no interval at all
INTERVAL, CENSORED_BELOW, CENSORED_ABOVE, CENSORED_BOTH = "studentised", "censored_below", "censored_above", "unbounded"
TOO_FEW_SEEDS = "too few seeds"
INTERVAL_KINDS = (INTERVAL, CENSORED_BELOW, CENSORED_ABOVE, CENSORED_BOTH, TOO_FEW_SEEDS)


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


def censored_utility_draws(budgets, scratch_curves: np.ndarray, targets: np.ndarray, n, interpolation: str = "log"):
    """U of every draw, censored at the ends of its scratch curve: −∞ where the target is below the
    curve's smallest point (n̂ < n_min), +∞ where it beats its largest (n̂ > n_max), NaN only where
    the target itself is not finite. ``scratch_curves`` (D, B), ``targets`` (D, J), ``n`` (J,)."""
    v = np.maximum.accumulate(np.asarray(scratch_curves, dtype=float), axis=1)
    t = np.asarray(targets, dtype=float)
    u = labels_needed_many(budgets, v, t, interpolation) / np.asarray(n, dtype=float) - 1.0
    u = np.where(t < v[:, :1], -np.inf, u)
    return np.where(t > v[:, -1:], np.inf, u)


def censored_percentiles(u: np.ndarray, n, budgets, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The (low, high) ends of the ``level`` interval of censored draws ``u`` (D, J) at budgets ``n``
    of a scratch curve at ``budgets``: order statistics (no interpolation between a finite draw and
    an infinite one), with −∞ / +∞ where the end falls among the draws censored on its own side and
    the censoring bound (n_min/n − 1 or n_max/n − 1) where it falls among those of the other side."""
    a = (1 - level) / 2
    n = np.asarray(n, dtype=float)
    lo_bound, hi_bound = float(np.min(budgets)) / n - 1.0, float(np.max(budgets)) / n - 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: no finite target at all
        lo = np.nanquantile(u, a, axis=0, method="inverted_cdf")
        hi = np.nanquantile(u, 1 - a, axis=0, method="inverted_cdf")
    lo = np.where(lo == np.inf, hi_bound, lo)  # ≥ 97.5 % of draws above the curve: U > n_max/n − 1
    hi = np.where(hi == -np.inf, lo_bound, hi)  # ≥ 97.5 % below it: U < n_min/n − 1
    return lo, hi


def interval_kind(lo: float, hi: float) -> str:
    """The ``interval`` column for one row's ends (see :data:`INTERVAL_KINDS`)."""
    if math.isnan(lo) or math.isnan(hi):
        return TOO_FEW_SEEDS
    if lo == -math.inf and hi == math.inf:
        return CENSORED_BOTH
    return CENSORED_BELOW if lo == -math.inf else CENSORED_ABOVE if hi == math.inf else INTERVAL


def format_interval(lo: float, hi: float, digits: int = 2, signed: bool = False) -> str:
    """``[0.10, 0.80]`` (``[+0.10, +0.80]`` when ``signed``), with an open end as ``−∞`` / ``+∞``;
    empty where there is no interval."""
    if math.isnan(lo) or math.isnan(hi):
        return ""
    fmt = f"{'+' if signed else ''}.{digits}f"

    def end(v: float) -> str:
        return "−∞" if v == -math.inf else "+∞" if v == math.inf else format(v, fmt)

    return f"[{end(lo)}, {end(hi)}]"


def utility_interval(
    scratch: pd.DataFrame,
    pretrained: pd.DataFrame,
    interpolation: str = "log",
    draws: int = 1000,
    rng: np.random.Generator | None = None,
    level: float = 0.95,
):
    """(low, high, seeds) arrays of U's interval at each pretrained budget, from per-seed long rows
    (label_budget, value): an open end is −∞ / +∞ (censored draws, see the module's docstring); NaN
    where the scratch curve or that point has fewer than ``MIN_SEEDS`` seeds."""
    rng = rng or np.random.default_rng(0)
    s, p = _point_stats(scratch), _point_stats(pretrained)
    s_draws, p_draws = _studentised_draws(s, draws, rng), _studentised_draws(p, draws, rng)
    n = p.index.to_numpy(dtype=float)
    u = censored_utility_draws(s.index.to_numpy(), s_draws, p_draws, n, interpolation)
    lo, hi = censored_percentiles(u, n, s.index.to_numpy(), level)
    enough = (p.seeds.to_numpy() >= MIN_SEEDS) & (s.seeds.min() >= MIN_SEEDS)
    return np.where(enough, lo, np.nan), np.where(enough, hi, np.nan), np.minimum(p.seeds.to_numpy(), s.seeds.min())


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
    the scratch curve's seeds; ``interval``: one of :data:`INTERVAL_KINDS`, an open end being ∓∞).

    A pretrained curve is compared with the scratch curve of the same task and the same ``context``
    (the finetuning dataset variant and the dataset itself, the backbone and its width, for the
    columns the table has): a ResNet50 is never measured against a ResNet9 baseline, nor one variant
    or one dataset against another. A split
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
                            "interval": interval_kind(lo, hi),
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
