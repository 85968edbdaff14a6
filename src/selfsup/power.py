"""Simulated studies with a known utility: the coverage of U's interval and the power to detect U.

Pure functions over :mod:`selfsup.utility`. A simulated study draws per-seed results of a scratch
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

from .utility import utility_interval


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
