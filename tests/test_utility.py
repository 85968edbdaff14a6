import math

import numpy as np
import pandas as pd
import pytest

from selfsup.utility import (
    LOWER_BOUND,
    OK,
    UNDEFINED,
    labels_needed,
    monotone_curve,
    utility,
    utility_curve,
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


def test_utility_table_bootstrap_interval_brackets_the_point_estimate():
    budgets = [100, 500, 1000]
    rows = _long("scratch", budgets, [[0.48, 0.52], [0.68, 0.72], [0.78, 0.82]]) + _long(
        "rotation", budgets[:2], [[0.69, 0.71], [0.74, 0.76]]
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
    assert np.isfinite(table.utility).all()


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
