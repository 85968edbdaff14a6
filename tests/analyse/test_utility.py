import math

import numpy as np
import pandas as pd
import pytest

from selfsup.analyse.power import flattening, interval_rates, simulated_study
from selfsup.analyse.utility import (
    CENSORED_ABOVE,
    CENSORED_BELOW,
    INTERVAL,
    LOWER_BOUND,
    OK,
    TOO_FEW_SEEDS,
    UNDEFINED,
    format_interval,
    labels_needed,
    labels_needed_many,
    monotone_curve,
    utility,
    utility_curve,
    utility_interval,
    utility_table,
)


def test_paper_example_scratch_needs_500_labels_for_what_pretraining_reaches_at_100():
    budgets, scratch = [100, 500, 1000], [0.50, 0.70, 0.80]
    for interp in ("log", "linear"):
        n_hat, status = labels_needed(budgets, scratch, 0.70, interp)
        assert status == OK and n_hat == pytest.approx(500)
        assert utility(100, n_hat) == pytest.approx(4.0)


def test_hand_computed_interpolation_in_log_and_linear_n():
    # halfway between 0.5 @ 100 and 0.7 @ 1000
    assert labels_needed([100, 1000], [0.5, 0.7], 0.6, "log")[0] == pytest.approx(math.sqrt(100 * 1000))
    assert labels_needed([100, 1000], [0.5, 0.7], 0.6, "linear")[0] == pytest.approx(550)


def test_pretrained_equal_to_scratch_has_zero_utility():
    budgets = [100, 250, 1000, 4000]
    scratch = [0.3, 0.45, 0.6, 0.8]
    for u, status in utility_curve(budgets, scratch, budgets, scratch):
        assert status == OK and u == pytest.approx(0.0)


@pytest.mark.parametrize("k", [2, 4])
def test_scratch_needing_k_times_the_labels_gives_k_minus_1(k):
    budgets = [100 * 2**i for i in range(8)]
    scratch = [0.1 + 0.1 * i for i in range(8)]  # linear in log2 n
    n = budgets[:4]
    pre = [scratch[budgets.index(b * k)] for b in n]
    for u, status in utility_curve(budgets, scratch, n, pre):
        assert status == OK and u == pytest.approx(k - 1)
    mid = [0.15, 0.25]  # between grid points: log interpolation keeps the ratio exact for a log-linear curve
    for u, _ in utility_curve(budgets, scratch, [100, 200], mid):
        assert u == pytest.approx(math.sqrt(2) - 1)


def test_beating_every_scratch_run_gives_a_lower_bound_and_worse_than_the_first_is_undefined():
    (u_lb, s_lb), (u_un, s_un) = utility_curve([100, 1000], [0.5, 0.7], [100, 1000], [0.9, 0.4])
    assert s_lb == LOWER_BOUND and u_lb == pytest.approx(1000 / 100 - 1)
    assert s_un == UNDEFINED and math.isnan(u_un)


def test_scratch_curve_is_made_monotone():
    assert monotone_curve([0.3, 0.5, 0.4, 0.6]).tolist() == [0.3, 0.5, 0.5, 0.6]
    # a dip in the scratch curve cannot create a second crossing
    assert labels_needed([100, 200, 400, 800], [0.3, 0.5, 0.4, 0.6], 0.45, "linear")[0] == pytest.approx(175)


def _long(method, budgets, per_seed):
    return [
        {
            "method": method,
            "task": "classification",
            "protocol": "finetune",
            "label_budget": b,
            "seed": s,
            "metric": "accuracy",
            "value": v,
        }
        for b, vals in zip(budgets, per_seed)
        for s, v in enumerate(vals)
    ]


def test_utility_table_interval_brackets_the_point_estimate():
    budgets = [100, 500, 1000]
    rows = _long("scratch", budgets, [[0.48, 0.5, 0.52], [0.68, 0.7, 0.72], [0.78, 0.8, 0.82]]) + _long(
        "rotation", budgets[:2], [[0.69, 0.7, 0.71], [0.74, 0.75, 0.76]]
    )
    table = utility_table(pd.DataFrame(rows), {"classification": "accuracy"}, n_boot=300)
    first = table[table.label_budget == 100].iloc[0]
    assert first.status == OK and first.utility == pytest.approx(4.0)
    assert first.ci_low <= first.utility <= first.ci_high and first.ci_low < first.ci_high
    assert list(table.columns[:8]) == [
        "method",
        "task",
        "protocol",
        "label_budget",
        "utility",
        "ci_low",
        "ci_high",
        "status",
    ]
    assert np.isfinite(table.utility).all() and (table.seeds == 3).all()
    # 0.75 ± 0.01 at 500 against scratch's best 0.80 ± 0.02 (3 seeds, t(2) tails): more than 2.5 % of the
    # draws beat the whole scratch curve, so the upper end is open
    assert table.interval.tolist() == ["studentised", CENSORED_ABOVE]
    assert table.ci_high.tolist()[1] == math.inf and table.ci_low.tolist()[1] <= table.utility.tolist()[1]


def test_scratch_is_matched_within_the_same_variant_and_backbone():
    budgets = [100, 500, 1000]
    rows = []
    for variant, scratch_vals, pre in (("-C--", [0.5, 0.7, 0.8], 0.7), ("TCVL", [0.2, 0.3, 0.4], 0.3)):
        for r in _long("scratch", budgets, [[v] for v in scratch_vals]) + _long("rotation", [100], [[pre]]):
            rows.append({**r, "finetune_variant": variant, "backbone": "resnet9", "width": 0.125})
    table = utility_table(pd.DataFrame(rows), {"classification": "accuracy"}, n_boot=10)
    by_variant = dict(zip(table.finetune_variant, table.utility))
    assert by_variant == pytest.approx({"-C--": 4.0, "TCVL": 4.0})  # each against its own scratch curve


def test_a_split_backbone_is_matched_with_its_familys_scratch_curve():
    budgets = [100, 500, 1000]
    rows = []
    for backbone, scratch_vals in (("resnet9", [0.5, 0.7, 0.8]), ("resnet50", [0.2, 0.3, 0.7])):
        rows += [
            {**r, "backbone": backbone, "width": 0.5} for r in _long("scratch", budgets, [[v] for v in scratch_vals])
        ]
    rows += [{**r, "backbone": "resnet9_split", "width": 0.5} for r in _long("cmc", [100], [[0.7]])]
    table = utility_table(pd.DataFrame(rows), {"classification": "accuracy"}, n_boot=10)
    assert table.backbone.tolist() == ["resnet9"] and table.utility.tolist() == pytest.approx([4.0])


# The scenarios of the coverage table in the README (bench/utility_coverage.py prints it):
# U = 0 at the smallest, interior and largest budgets of the grid; U = 1 inside it; a scratch
# curve that flattens at the top (on a grid of doublings: a sparser one biases U there, see the bench).
COVERAGE_SCENARIOS = {
    "U=0, log-linear": (0.0, [30, 100, 300, 1000], 0.03, None),
    "U=1, log-linear": (1.0, [50, 100, 250, 1000], [0.06, 0.04, 0.03, 0.02], None),
    "U=0, flattening top": (0.0, [30, 60, 120, 250, 500, 1000], 0.03, flattening),
    "U=1, flattening top": (1.0, [30, 60, 120, 250, 500, 1000], 0.03, flattening),
}


@pytest.mark.parametrize("seeds", [3, 5])
@pytest.mark.parametrize("scenario", list(COVERAGE_SCENARIOS))
def test_the_95_percent_interval_covers_the_true_utility_at_every_budget_ends_included(scenario, seeds):
    """Nominal 95 % covers the true U in ≥ 90 % of 200 simulated studies at every budget: at the null
    (U = 0) as well as at an effect, at both ends of the budget range (where draws beyond the scratch
    curve are censored, never dropped) as well as inside it, with 3 seeds as well as 5."""
    u_true, budgets, sigma, curve = COVERAGE_SCENARIOS[scenario]
    r = interval_rates(seeds, u_true, budgets, sigma, curve)
    coverage, excludes_zero, open_low, open_high = r.covered, r.excludes_zero, r.open_low, r.open_high
    assert (coverage >= 0.90).all(), coverage
    if u_true == 0:
        # at the null an interval that excludes 0 is a false finding: at most ~5 %, ends included
        assert (excludes_zero <= 0.10).all(), excludes_zero
        # at the smallest budget half the pretrained draws fall below the scratch curve: the lower end
        # is open (−∞); at the largest half beat it: the upper end is open (+∞)
        assert open_low[0] >= 0.9 and open_high[-1] >= 0.9, (open_low, open_high)
        assert open_low[2] <= 0.1 and open_high[1] <= 0.1, (open_low, open_high)  # inside: two finite ends
    else:
        inside = np.array(budgets) * (1 + u_true) <= budgets[-1]  # n̂ on the curve: the interval can exclude 0
        if seeds >= 5 and curve is None:  # 3 seeds give wide intervals: the t(2) tails are the price of 3 seeds
            assert (excludes_zero[inside] >= 0.4).all(), excludes_zero  # (power: bench/utility_coverage.py)
        assert (open_high[~inside] >= 0.9).all(), open_high  # (1 + U) n beyond the curve: U ≥ n_max/n − 1


def test_draws_beyond_the_curve_are_censored_at_their_bound_and_never_dropped():
    """The cases a dropped draw got wrong: 5 seeds whose pretrained mean is far below scratch's smallest
    point (every draw censored below) give U < n_min/n − 1, not "too few seeds"; far above the largest,
    U > n_max/n − 1."""
    budgets = [100, 300, 1000]
    scratch = pd.DataFrame(
        [
            {"label_budget": b, "value": m + d}
            for b, m in zip(budgets, (0.5, 0.6, 0.7))
            for d in (-0.02, -0.01, 0, 0.01, 0.02)
        ]
    )
    low = pd.DataFrame([{"label_budget": b, "value": 0.2 + d} for b in (100, 300) for d in (-0.01, 0, 0.01, 0, 0)])
    lo, hi, k = utility_interval(scratch, low, rng=np.random.default_rng(0))
    assert (k == 5).all() and (lo == -np.inf).all() and hi.tolist() == pytest.approx([0.0, 100 / 300 - 1])
    high = pd.DataFrame([{"label_budget": b, "value": 0.95 + d} for b in (100, 1000) for d in (-0.01, 0, 0.01, 0, 0)])
    lo, hi, _ = utility_interval(scratch, high, rng=np.random.default_rng(0))
    assert lo.tolist() == pytest.approx([9.0, 0.0]) and (hi == np.inf).all()
    rows = [
        {**r, "method": m, "task": "classification", "protocol": "finetune", "metric": "accuracy", "seed": i % 5}
        for m, df in (("scratch", scratch), ("rotation", low))
        for i, r in enumerate(df.to_dict("records"))
    ]
    table = utility_table(pd.DataFrame(rows), {"classification": "accuracy"}, n_boot=200)
    assert table.interval.tolist() == [CENSORED_BELOW] * 2 and table.status.tolist() == [UNDEFINED] * 2
    assert format_interval(table.ci_low[0], table.ci_high[0]) == "[−∞, 0.00]"
    assert format_interval(1.0, np.inf) == "[1.00, +∞]" and format_interval(np.nan, 1.0) == ""
    assert INTERVAL == "studentised"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # all-NaN draws where U is undefined
def test_a_seed_bootstrap_would_under_cover_which_is_why_it_is_not_used():
    """The old interval (resampling 3 seeds per curve point) covers the true U far less than 95 %."""
    rng = np.random.default_rng(7)
    budgets, sigma = [50, 100, 250, 1000], np.array([0.06, 0.04, 0.03, 0.02])
    n = np.array(budgets, dtype=float)
    hits = total = 0
    for _ in range(200):
        scratch, pre = simulated_study(rng, 3, 1.0, budgets, sigma)
        s = scratch.pivot(index="seed", columns="label_budget", values="value").to_numpy()
        p = pre.pivot(index="seed", columns="label_budget", values="value").to_numpy()
        pick = rng.integers(0, 3, (1000, 3, len(n)))
        s_b = np.take_along_axis(np.broadcast_to(s, (1000, *s.shape)), pick, 1).mean(1)
        p_b = np.take_along_axis(np.broadcast_to(p, (1000, *p.shape)), pick, 1).mean(1)
        u = labels_needed_many(n, s_b, p_b) / n - 1
        lo, hi = np.nanpercentile(u, 2.5, axis=0), np.nanpercentile(u, 97.5, axis=0)
        hits += ((lo <= 1.0) & (1.0 <= hi))[:2].sum()
        total += 2
    assert hits / total < 0.90


def test_fewer_than_three_seeds_give_no_interval_and_say_so():
    rng = np.random.default_rng(0)
    scratch, pre = simulated_study(rng, 2, 1.0, [50, 100, 250, 1000], np.array([0.05] * 4))
    lo, hi, k = utility_interval(scratch, pre, rng=rng)
    assert np.isnan(lo).all() and np.isnan(hi).all() and (k == 2).all()
    rows = [
        {**r, "method": "scratch", "task": "classification", "protocol": "finetune", "metric": "accuracy"}
        for r in scratch.to_dict("records")
    ]
    rows += [
        {**r, "method": "rotation", "task": "classification", "protocol": "finetune", "metric": "accuracy"}
        for r in pre.to_dict("records")
    ]
    table = utility_table(pd.DataFrame(rows), {"classification": "accuracy"}, n_boot=50)
    assert (table.interval == TOO_FEW_SEEDS).all() and table.ci_low.isna().all()


def test_the_vectorised_labels_needed_agrees_with_the_scalar_one():
    rng = np.random.default_rng(3)
    n = [50, 100, 250, 1000]
    curves = np.sort(rng.uniform(0.1, 0.9, (40, 4)), axis=1) + rng.normal(0, 0.03, (40, 4))
    targets = rng.uniform(0.0, 1.0, (40, 3))
    for interpolation in ("log", "linear"):
        many = labels_needed_many(n, curves, targets, interpolation)
        for d in range(40):
            for j in range(3):
                one, status = labels_needed(n, curves[d], targets[d, j], interpolation)
                assert (np.isnan(many[d, j]) and status == UNDEFINED) or many[d, j] == pytest.approx(one), (d, j)


def test_the_mean_interval_covers_the_true_mean_at_its_nominal_rate():
    from selfsup.analyse.utility import mean_interval

    rng = np.random.default_rng(7)
    for seeds in (3, 5):
        hits = 0
        for _ in range(400):
            lo, hi = mean_interval(rng.normal(0.6, 0.05, seeds))
            hits += lo <= 0.6 <= hi
        assert 0.91 <= hits / 400 <= 0.99  # nominal 95 %: a t interval is exact for normal seeds
    assert np.isnan(mean_interval([0.5, 0.6])[0])  # too few seeds: no interval


def test_two_datasets_of_one_variant_are_two_curves_with_their_own_utilities():
    """Two renders of one variant (say 2,000 and 20,000 images): their scratch seeds are never pooled
    into one baseline. Here the first dataset's pretraining saves 4× the labels, the second's nothing."""
    budgets = [100, 500, 1000]
    rows = []
    for data_hash, scratch_vals, pre in (("aaaa1111", [0.5, 0.7, 0.8], 0.7), ("bbbb2222", [0.3, 0.4, 0.6], 0.3)):
        per_seed = [[v - 0.01, v, v + 0.01] for v in scratch_vals]
        for r in _long("scratch", budgets, per_seed) + _long("rotation", [100], [[pre - 0.01, pre, pre + 0.01]]):
            rows.append(
                {**r, "finetune_variant": "-C--", "dataset_hash": data_hash, "backbone": "resnet9", "width": 0.125}
            )
    table = utility_table(pd.DataFrame(rows), {"classification": "accuracy"}, n_boot=200)
    by_data = dict(zip(table.dataset_hash, table.utility))
    assert by_data == pytest.approx({"aaaa1111": 4.0, "bbbb2222": 0.0})
    pooled = utility_table(
        pd.DataFrame(rows).drop(columns="dataset_hash"), {"classification": "accuracy"}, n_boot=200
    )  # what a curve per variant gave: one row from a pooled baseline, right for neither dataset
    assert len(pooled) == 1 and pooled.utility[0] not in (pytest.approx(4.0), pytest.approx(0.0))
