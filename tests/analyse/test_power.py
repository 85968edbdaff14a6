import numpy as np
import pandas as pd
import pytest

from selfsup.analyse.power import U_GRID, detection_power, measured_curve, minimum_detectable, power_table

BUDGETS = [30, 60, 120, 250, 500, 1000]
MEANS = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]  # a scratch curve rising 0.1 per doubling


def test_the_measured_curve_interpolates_in_log_n_and_is_monotone():
    c = measured_curve([100, 1000], [0.5, 0.7])
    assert c(np.sqrt(100 * 1000)) == pytest.approx(0.6) and c(5000) == pytest.approx(0.7)
    assert measured_curve([1, 2, 4], [0.5, 0.4, 0.6])(2) == pytest.approx(0.5)  # a dip is made monotone


def test_power_grows_with_seeds_and_falls_with_noise_and_the_largest_budget_sees_no_saving():
    quiet5 = detection_power(BUDGETS, MEANS, [0.03] * 6, seeds=5, studies=100)
    quiet3 = detection_power(BUDGETS, MEANS, [0.03] * 6, seeds=3, studies=100)
    noisy5 = detection_power(BUDGETS, MEANS, [0.09] * 6, seeds=5, studies=100)
    u1 = list(U_GRID).index(1.0)
    interior = slice(1, 5)
    assert (quiet5[u1, interior] >= 0.8).all(), quiet5[u1]  # 5 seeds of s.d. 0.03 see U = 1 (halved labels)
    assert quiet3[u1, interior].mean() < quiet5[u1, interior].mean()
    assert noisy5[u1, interior].mean() < 0.5 * quiet5[u1, interior].mean()
    assert np.isnan(quiet5[:, -1]).all()  # (1 + U) n beyond the curve: a saving is censored there
    mdu = minimum_detectable(quiet5)
    assert mdu[1:5].tolist() == [1.0] * 4 and np.isnan(mdu[-1])
    assert not (minimum_detectable(noisy5)[1:5] <= 1.0).any()  # three times the noise: U = 1 is not detectable


def test_at_the_null_an_interval_above_zero_is_rare():
    false_positive = detection_power(BUDGETS, MEANS, [0.03] * 6, seeds=3, u_grid=(0.0,), studies=200)
    assert (false_positive <= 0.08).all(), false_positive  # nominal 2.5 % one-sided, ends included


def test_the_power_table_has_one_row_per_scratch_budget():
    curves = pd.DataFrame(
        {
            "method": "scratch",
            "task": "classification",
            "protocol": "finetune",
            "label_budget": BUDGETS,
            "mean": MEANS,
            "std": 0.03,
            "seeds": 5,
        }
    )
    t = power_table(pd.concat([curves, curves.assign(method="rotation")]), studies=50, draws=300)
    assert t.label_budget.tolist() == BUDGETS and (t.seeds == 5).all()
    assert t["where"].iloc[0].startswith("smallest") and t["where"].iloc[-1].startswith("largest")
    assert np.isnan(t.power_u1.iloc[-1]) and (t.power_u1.iloc[1:5] >= 0.7).all()
    # each step rises 0.1 with a standard error of √(2 · 0.03² / 5) = 0.019: 5.27 standard errors
    assert np.isnan(t.rise_over_se.iloc[0]) and t.rise_over_se.iloc[1:].to_numpy() == pytest.approx(5.27, abs=0.01)
    assert power_table(curves.assign(seeds=2)).empty  # no interval below 3 seeds: no power either
