"""Simulated studies with a known utility: the coverage of U's interval and the power to detect U.

Pure functions over :mod:`selfsup.analyse.utility`. A simulated study draws per-seed results of a scratch
curve (a function of n) and of a pretrained model that scores at n what scratch scores at (1 + U) n,
with Gaussian noise per seed and budget; :func:`interval_rates` runs :func:`utility_interval` on many
such studies and says, per budget, how often the interval covers the true U, excludes 0, and has an
open (censored) end. The tests check coverage with it (≥ 90 % at the null and at an effect, at both
ends of the budget range and inside it, 3 and 5 seeds); ``bench/utility_coverage.py`` prints the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from selfsup.analyse.utility import utility_interval


def log_linear(n0: float, start: float = 0.1, slope: float = 0.12) -> Callable[[np.ndarray], np.ndarray]:
    """A scratch curve linear in log n (log interpolation is exact on it)."""
    return lambda m: start + slope * np.log(np.asarray(m, dtype=float) / n0)


def flattening(m) -> np.ndarray:
    """A scratch curve that flattens at the top: 0.33 at 30 labels, 0.89 at 1,000."""
    return 0.9 - 0.7 * np.exp(-np.asarray(m, dtype=float) / 150)


def simulated_study(
    rng: np.random.Generator,
    seeds: int,
    u_true: float,
    budgets,
    sigma,
    curve: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-seed long rows (label_budget, seed, value) of scratch and of the pretrained model: scratch
    follows ``curve`` (log-linear from the first budget unless given), the pretrained model at n
    scores ``curve((1 + U) n)``; the noise s.d. ``sigma`` is one value or one per budget (the
    pretrained point takes the s.d. interpolated at (1 + U) n)."""
    n = np.asarray(budgets, dtype=float)
    curve = curve or log_linear(n[0])
    sigma = np.broadcast_to(np.asarray(sigma, dtype=float), n.shape)
    sd = np.interp(np.log(n * (1 + u_true)), np.log(n), sigma)
    scratch = curve(n) + sigma * rng.standard_normal((seeds, len(n)))
    pre = curve(n * (1 + u_true)) + sd * rng.standard_normal((seeds, len(n)))

    def long(values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "label_budget": np.tile(n.astype(int), seeds),
                "seed": np.repeat(np.arange(seeds), len(n)),
                "value": values.ravel(),
            }
        )

    return long(scratch), long(pre)


@dataclass(frozen=True)
class Rates:
    """Per budget, over the simulated studies: shares of intervals that cover the true U, that
    exclude 0, with an open lower end (−∞) and with an open upper end (+∞); and the median width
    of the intervals with two finite ends (NaN where none has)."""

    covered: np.ndarray
    excludes_zero: np.ndarray
    open_low: np.ndarray
    open_high: np.ndarray
    median_width: np.ndarray


def interval_rates(
    seeds: int,
    u_true: float,
    budgets,
    sigma,
    curve: Callable[[np.ndarray], np.ndarray] | None = None,
    studies: int = 200,
    draws: int = 1000,
    rng: np.random.Generator | None = None,
) -> Rates:
    """:class:`Rates` of the 95 % utility interval over ``studies`` simulated studies."""
    rng = rng or np.random.default_rng([seeds, int(round(10 * u_true)), len(budgets)])
    b = len(budgets)
    covered, excludes, open_low, open_high = (np.zeros(b) for _ in range(4))
    widths = []
    for _ in range(studies):
        scratch, pre = simulated_study(rng, seeds, u_true, budgets, sigma, curve)
        lo, hi, _ = utility_interval(scratch, pre, draws=draws, rng=rng)
        covered += (lo <= u_true) & (u_true <= hi)
        excludes += (lo > 0) | (hi < 0)
        open_low += lo == -np.inf
        open_high += hi == np.inf
        widths.append(np.where(np.isfinite(lo) & np.isfinite(hi), hi - lo, np.nan))
    w = np.array(widths)
    med = np.array([np.median(c[np.isfinite(c)]) if np.isfinite(c).any() else np.nan for c in w.T])
    return Rates(covered / studies, excludes / studies, open_low / studies, open_high / studies, med)


U_GRID = (0.25, 0.5, 1.0, 2.0, 4.0)  # utilities a power analysis tries: 1.25× … 5× the labels
POWER = 0.8


def measured_curve(budgets, means) -> Callable[[np.ndarray], np.ndarray]:
    """A scratch curve through measured means (made monotone), linear in log n between budgets and
    flat beyond the largest: what a pretrained model scoring "scratch at (1 + U) n" would score."""
    n = np.log(np.asarray(budgets, dtype=float))
    v = np.maximum.accumulate(np.asarray(means, dtype=float))
    return lambda m: np.interp(np.log(np.asarray(m, dtype=float)), n, v)


def detection_power(
    budgets,
    means,
    sds,
    seeds: int,
    u_grid=U_GRID,
    studies: int = 200,
    draws: int = 400,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """(len(u_grid), B): per true U and budget, the share of simulated studies whose 95 % interval
    lies above 0, for a scratch curve with these per-budget ``means`` and seed s.d. ``sds`` (as
    measured) at ``seeds`` seeds; NaN where (1 + U) n lies beyond the largest budget (U censored)."""
    rng = rng or np.random.default_rng([seeds, len(budgets), 2020])
    n = np.asarray(budgets, dtype=float)
    curve = measured_curve(n, means)
    sigma = np.maximum(np.asarray(sds, dtype=float), 1e-6)
    out = np.full((len(u_grid), len(n)), np.nan)
    for i, u in enumerate(u_grid):
        inside = n * (1 + u) <= n[-1]
        if not inside.any():
            continue
        hits = np.zeros(len(n))
        for _ in range(studies):
            scratch, pre = simulated_study(rng, seeds, u, n, sigma, curve)
            lo, _, _ = utility_interval(scratch, pre, draws=draws, rng=rng)
            hits += lo > 0
        out[i] = np.where(inside, hits / studies, np.nan)
    return out


def minimum_detectable(power: np.ndarray, u_grid=U_GRID, target: float = POWER) -> np.ndarray:
    """Per budget, the smallest U of ``u_grid`` detected with at least ``target`` power (NaN: none)."""
    out = np.full(power.shape[1], np.nan)
    for j in range(power.shape[1]):
        ok = [u for u, p in zip(u_grid, power[:, j]) if np.isfinite(p) and p >= target]
        out[j] = min(ok) if ok else np.nan
    return out


# power.csv's columns besides the task and the curve's context columns
POWER_VALUES = ("label_budget", "seeds", "mean", "sd", "rise_over_se", "power_u1", "min_detectable_u", "where")


def power_table(curves: pd.DataFrame, baseline: str = "scratch", studies: int = 200, draws: int = 400) -> pd.DataFrame:
    """The study's own power, per task and scratch curve of ``curves`` (mean, std, seeds per budget):
    at each budget the mean, the seed s.d., the rise from the budget below over its standard error
    (√(s²/k + s'²/k'); above 2 the step is measured), the power to detect U = 1 (pretraining halves the labels) and the
    minimum detectable U at 80 % power (``U_GRID``), by simulation from the measured curve and s.d.
    At the largest budget a saving is never detectable (U above 0 is censored at 0 there); at the
    smallest only one large enough to put the pretrained mean inside the curve."""
    cols = ["task", *POWER_VALUES]
    rows = []
    keys = [
        c
        for c in curves.columns
        if c not in ("method", "protocol", "label_budget", "mean", "std", "seeds", "ci_low", "ci_high")
    ]
    scratch = curves[(curves.method == baseline) & (curves.protocol == "finetune")]
    for key, g in scratch.groupby(keys, sort=True, dropna=False) if keys else [((), scratch)]:
        g = g.sort_values("label_budget")
        if len(g) < 2 or g.seeds.min() < 3:
            continue
        n, k = g.label_budget.to_numpy(), int(g.seeds.min())
        # each step's rise over its standard error (a curve that measures something rises by > 2)
        m, sd = g["mean"].to_numpy(float), g["std"].fillna(0).to_numpy(float)
        se2 = sd**2 / g.seeds.to_numpy(float)
        rise = np.r_[np.nan, np.diff(m) / np.sqrt(se2[1:] + se2[:-1])]
        p = detection_power(n, m, sd, k, studies=studies, draws=draws)
        mdu = minimum_detectable(p)
        u1 = p[list(U_GRID).index(1.0)]
        key = key if isinstance(key, tuple) else (key,)
        ctx = dict(zip(keys, key))
        for j, b in enumerate(n):
            where = (
                "smallest budget (a loss is censored)"
                if j == 0
                else "largest budget (a saving is censored)"
                if j == len(n) - 1
                else "interior"
            )
            rows.append(
                {
                    **ctx,
                    "label_budget": int(b),
                    "seeds": k,
                    "mean": float(m[j]),
                    "sd": float(g["std"].iloc[j]),
                    "rise_over_se": float(rise[j]),
                    "power_u1": float(u1[j]),
                    "min_detectable_u": float(mdu[j]),
                    "where": where,
                }
            )
    extra = [c for c in keys if c != "task"]
    return pd.DataFrame(rows, columns=cols[:1] + extra + cols[1:])
