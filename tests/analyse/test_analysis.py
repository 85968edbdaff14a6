"""The report's tables as pure functions, on hand-built results."""

import math

import pandas as pd
import pytest
from scipy import stats

from selfsup.analyse.analysis import (
    backbone_table,
    factor_effects,
    factor_summary,
    frozen_table,
    labels_saved,
    probe_table,
    protocol_agreement,
    transfer_matrix,
)

METRIC = {"classification": "accuracy"}


def _row(method, protocol, budget, value, seed=0, **extra):
    return {
        "method": method,
        "task": "classification",
        "protocol": protocol,
        "label_budget": budget,
        "seed": seed,
        "metric": "accuracy",
        "value": value,
        **extra,
    }


def test_protocol_agreement_matches_scipy_on_method_means():
    lin = {"a": 0.5, "b": 0.6, "c": 0.7, "d": 0.65}
    ft = {"a": 0.8, "b": 0.85, "c": 0.9, "d": 0.7}
    rows = [_row(m, "linear", 100, v + d, seed=s) for m, v in lin.items() for s, d in ((0, -0.01), (1, 0.01))]
    rows += [_row(m, "finetune", 100, v) for m, v in ft.items()] + [_row("scratch", "finetune", 100, 0.1)]
    table = protocol_agreement(pd.DataFrame(rows), METRIC)
    assert len(table) == 1 and table.methods.iloc[0] == 4  # scratch is not a ranked method
    tau, p = stats.kendalltau(list(ft.values()), list(lin.values()))
    assert table.kendall_tau.iloc[0] == pytest.approx(tau) and table.kendall_p.iloc[0] == pytest.approx(p)
    assert table.spearman_rho.iloc[0] == pytest.approx(stats.spearmanr(list(ft.values()), list(lin.values()))[0])


def test_probe_table_takes_the_largest_budget_per_variant():
    rows = [
        _row("rot", "linear", b, v, finetune_variant=var)
        for var in ("-C--", "TCVL")
        for b, v in ((100, 0.3), (1000, 0.6 if var == "-C--" else 0.4))
    ]
    t = probe_table(pd.DataFrame(rows), METRIC)
    assert dict(zip(t.finetune_variant, t.value)) == {"-C--": 0.6, "TCVL": 0.4} and set(t.label_budget) == {1000}


def test_factor_effects_pair_variants_that_differ_in_one_factor():
    util = pd.DataFrame(
        [
            {
                "method": "rot",
                "task": "classification",
                "protocol": "finetune",
                "label_budget": n,
                "utility": u + (0.5 if n == 1000 else 0.0),
                "status": "ok",
                "finetune_variant": v,
            }
            for v, u in (("----", 1.0), ("T---", 0.25), ("-C--", 2.0), ("TC--", 0.5))
            for n in (100, 1000)
        ]
    )
    t = factor_effects(util)
    got = {(r.factor, r.variant_off, r.variant_on, r.label_budget): r.delta_utility for r in t.itertuples()}
    want = {("T", "----", "T---"): -0.75, ("C", "----", "-C--"): 1.0, ("T", "-C--", "TC--"): -1.5}
    want[("C", "T---", "TC--")] = 0.25
    assert got == {(*k, n): v for k, v in want.items() for n in (100, 1000)}
    summary = factor_summary(t).set_index("factor")
    assert summary.loc["T", "delta_utility"] == pytest.approx((-0.75 - 1.5) / 2)
    assert summary.loc["T", "pairs"] == 2 and summary.loc["T", "n"] == 4
    lo, hi = stats.t.interval(0.95, 3, loc=-1.125, scale=stats.sem([-0.75, -0.75, -1.5, -1.5]))
    assert (summary.loc["T", "ci_low"], summary.loc["T", "ci_high"]) == (pytest.approx(lo), pytest.approx(hi))


def test_frozen_backbone_and_transfer_tables():
    rows = [_row("rot", p, 100, v) for p, v in (("finetune", 0.9), ("frozen-1", 0.8), ("frozen-3", 0.5))]
    t = frozen_table(pd.DataFrame(rows), METRIC)
    assert dict(zip(t.frozen_blocks, t.value)) == {0: 0.9, 1: 0.8, 3: 0.5}
    assert dict(zip(t.frozen_blocks, t.delta.round(6))) == {0: 0.0, 1: -0.1, 3: -0.4}
    rows = [_row("rot", "finetune", 100, v, backbone=b) for b, v in (("resnet9", 0.7), ("resnet50", 0.75))]
    assert set(backbone_table(pd.DataFrame(rows), METRIC).backbone) == {"resnet9", "resnet50"}
    assert backbone_table(pd.DataFrame(rows[:1]), METRIC).empty  # one backbone: nothing to compare


def test_transfer_is_the_mean_change_against_scratch_over_budgets():
    scratch = {("-C--", 100): 0.5, ("-C--", 1000): 0.7, ("TCVL", 100): 0.3, ("TCVL", 1000): 0.5}
    rows = [_row("scratch", "finetune", n, v, pretrain_variant="", finetune_variant=b) for (b, n), v in scratch.items()]
    rows += [
        _row(
            "rot",
            "finetune",
            n,
            scratch[(b, n)] + d + (0.02 if n == 1000 else 0),
            seed=s,
            pretrain_variant=a,
            finetune_variant=b,
        )
        for a, b, d in (("-C--", "-C--", 0.1), ("-C--", "TCVL", -0.05), ("TCVL", "TCVL", 0.04))
        for n in (100, 1000)
        for s in (0, 1)
    ]
    t = transfer_matrix(pd.DataFrame(rows), METRIC).set_index(["pretrain_variant", "finetune_variant"])
    assert len(t) == 3 and set(t.budgets) == {"100-1000"}
    assert t.loc[("-C--", "TCVL"), "delta"] == pytest.approx(-0.04)
    assert t.loc[("-C--", "-C--"), "delta"] == pytest.approx(0.11)
    assert t.loc[("TCVL", "TCVL"), "value"] == pytest.approx((0.34 + 0.56) / 2)
    same = [r for r in rows if r["pretrain_variant"] in ("", r["finetune_variant"])]
    assert transfer_matrix(pd.DataFrame(same), METRIC).empty  # no pretraining on another variant


def test_labels_saved_and_where_pretraining_stops_paying():
    util = pd.DataFrame(
        [
            {
                "method": "rot",
                "task": "classification",
                "protocol": "finetune",
                "label_budget": b,
                "utility": u,
                "status": s,
            }
            for b, u, s in ((50, 1.0, "ok"), (100, 0.8, "ok"), (250, -0.1, "ok"), (1000, math.nan, "undefined"))
        ]
    )
    t = labels_saved(util, {"rot": 0.5}).iloc[0]
    assert t.max_labels_saved == pytest.approx(80) and t.at_budget == 100
    assert t.labels_saved_per_hour == pytest.approx(160) and t.stops_paying_at == 250
    util.loc[3, ["utility", "status"]] = [9.0, "lower_bound"]  # pays again at the top: it never stopped
    assert pd.isna(labels_saved(util, {"rot": 0.5}).iloc[0].stops_paying_at)


def test_labels_saved_per_variant_and_backbone_uses_that_datasets_pretraining_hours():
    rows = []
    for variant, backbone, u in (("-C--", "resnet9", 1.0), ("TCVL", "resnet9", 0.5), ("TCVL", "resnet50", 2.0)):
        rows += [
            {
                "method": "cmc",
                "task": "classification",
                "protocol": "finetune",
                "label_budget": 100,
                "utility": u,
                "status": "ok",
                "finetune_variant": variant,
                "backbone": backbone,
            }
        ]
    hours = {
        "cmc": 9.0,
        ("cmc", "single", "-C--", "resnet9"): 0.5,
        ("cmc", "single", "TCVL", "resnet9"): 1.0,
        ("cmc", "multi", "TCVL", "resnet50"): 7.0,
    }  # a multi-set pretraining: not the one behind classification
    t = labels_saved(pd.DataFrame(rows), hours, {"classification": "single"}).set_index(
        ["finetune_variant", "backbone"]
    )
    assert len(t) == 3  # one row per variant × backbone, never a mix of their curves
    assert t.loc[("-C--", "resnet9"), "labels_saved_per_hour"] == pytest.approx(200)
    assert t.loc[("TCVL", "resnet9"), "labels_saved_per_hour"] == pytest.approx(50)
    assert t.loc[("TCVL", "resnet50"), "pretrain_hours"] == 9.0  # no run of its own: the method's latest


def test_report_tables_build_every_table_from_results_alone_no_files():
    """tables.report_tables: results in, DataFrames out. Scratch doubles its accuracy from 100 to 400
    labels; the pretrained model at 100 labels matches scratch at 400, so U(100) = 400/100 − 1 = 3."""
    from selfsup.analyse.tables import report_tables, stage_times

    rows = [_row("scratch", "finetune", n, v, seed=s) for n, v in ((100, 0.2), (200, 0.3), (400, 0.4)) for s in (0, 1)]
    rows += [_row("rotation", "finetune", 100, 0.4, seed=s) for s in (0, 1)]
    built = report_tables(pd.DataFrame(rows), METRIC, "log", 20, stage_times(pd.DataFrame()))
    u = built.utility.set_index(["method", "label_budget"]).loc[("rotation", 100)]
    assert u.status == "ok" and u.utility == pytest.approx(3.0)
    curve = built.curves.set_index(["method", "label_budget"])
    assert curve.loc[("scratch", 200), "mean"] == pytest.approx(0.3) and curve.loc[("scratch", 200), "seeds"] == 2
    assert built.metrics["utility"]["rotation/classification/finetune"]["mean_utility"] == pytest.approx(3.0)
    assert {"protocol_agreement", "factor_effects", "labels_saved", "transfer", "compute"} <= set(built.analysis)


def test_report_tables_keep_each_pretraining_variant_its_own_curve_and_utility():
    """Transfer: one method pretrained on two variants, finetuned on one. Pretrained on -C-- it matches
    scratch at 400 labels from 100 (U = 3); pretrained on TCVL it only matches scratch (U = 0). Pooled,
    the two would read as one curve at 0.3 (U = 1); each must stay its own curve, utility and label."""
    from selfsup.analyse.tables import dvc_plot_tables, report_tables, stage_times

    ctx = {"finetune_variant": "-C--", "backbone": "resnet9"}
    rows = [
        _row("scratch", "finetune", n, v, seed=s, pretrain_variant=math.nan, **ctx)
        for n, v in ((100, 0.2), (200, 0.3), (400, 0.4))
        for s in (0, 1, 2)
    ]
    rows += [
        _row("rotation", "finetune", 100, v + d, seed=s, pretrain_variant=pv, **ctx)
        for pv, v in (("-C--", 0.4), ("TCVL", 0.2))
        for s, d in ((0, -0.01), (1, 0.0), (2, 0.01))
    ]
    built = report_tables(pd.DataFrame(rows), METRIC, "log", 50, stage_times(pd.DataFrame()))
    u = built.utility.set_index(["method", "pretrain_variant"])
    assert len(u) == 2 and (u.status == "ok").all()
    assert u.loc[("rotation", "-C--"), "utility"] == pytest.approx(3.0)
    assert u.loc[("rotation", "TCVL"), "utility"] == pytest.approx(0.0, abs=1e-9)
    curves = built.curves.set_index(["method", "pretrain_variant", "label_budget"])
    assert curves.loc[("rotation", "TCVL", 100), "mean"] == pytest.approx(0.2)
    assert curves.loc[("scratch", "", 200), "seeds"] == 3  # scratch, with no pretraining variant, is kept
    series = set(dvc_plot_tables(built.curves, built.utility)["plots/curves/classification.csv"].series)
    assert series == {"scratch", "rotation [pretrained on -C--]", "rotation [pretrained on TCVL]"}
    saved = built.analysis["labels_saved"].set_index("pretrain_variant")
    assert saved.loc["-C--", "max_labels_saved"] == pytest.approx(300) and saved.loc["TCVL", "max_labels_saved"] == 0
    assert built.analysis["factor_effects"].empty  # -C-- → TCVL across pretraining sets is no factor pair


def test_utility_of_one_pretraining_variant_is_unchanged_by_the_column():
    rows = [_row("scratch", "finetune", n, v, seed=s) for n, v in ((100, 0.2), (400, 0.4)) for s in (0, 1, 2)]
    rows += [_row("rotation", "finetune", 100, 0.4 + 0.01 * s, seed=s) for s in (0, 1, 2)]
    from selfsup.analyse.utility import utility_table

    plain = utility_table(pd.DataFrame(rows), METRIC, n_boot=50)
    tagged = utility_table(
        pd.DataFrame([{**r, "pretrain_variant": "" if r["method"] == "scratch" else "-C--"} for r in rows]),
        METRIC,
        n_boot=50,
    )
    pd.testing.assert_frame_equal(plain, tagged.drop(columns="pretrain_variant"))
    assert list(tagged.pretrain_variant) == ["-C--"]


def test_chance_and_best_mean_never_average_over_datasets():
    from selfsup.analyse.tables import chance_levels

    rows = [
        _row(m, "finetune", 100, v, seed=s, finetune_variant=var, chance=c)
        for var, c, base in (("----", 0.1, 1.0), ("TCVL", 0.14, 0.3))
        for m, v in (("scratch", base), ("rotation", base - 0.05))
        for s in (0, 1)
    ]
    t = chance_levels(pd.DataFrame(rows), METRIC).iloc[0]
    assert t.best_mean == pytest.approx(1.0) and t.best_by == "scratch (finetune, n=100, finetune_variant ----)"
    assert t.chance == pytest.approx(0.14)  # the highest of the datasets' chance levels
    # learned? scratch's top on its weakest curve (TCVL: 0.3) against twice the chance level
    assert t.scratch_top == pytest.approx(0.3) and t.learned
    low = chance_levels(pd.DataFrame([{**r, "chance": 0.2} for r in rows]), METRIC).iloc[0]
    assert not low.learned  # 0.3 < 2 × 0.2


def _util_row(method, n, u, lo, hi, task="classification", variant="-C--"):
    return {
        "method": method,
        "task": task,
        "protocol": "finetune",
        "label_budget": n,
        "utility": u,
        "ci_low": lo,
        "ci_high": hi,
        "status": "ok",
        "finetune_variant": variant,
        "pretrain_variant": variant,
    }


def test_the_answer_names_a_saving_with_its_interval_and_otherwise_the_detectable_utility():
    from selfsup.analyse.analysis import answer

    inf = float("inf")
    util = pd.DataFrame(
        [
            _util_row("rotation", 30, 0.3, -inf, 2.0),
            _util_row("rotation", 100, 0.8, 0.2, 1.5),
            _util_row("rotation", 1000, -0.2, -0.6, inf),
            _util_row("simclr", 100, 0.1, -0.3, 0.6),
            _util_row("rotation", 30, 0.1, -inf, 1.0, variant="TC--"),
            _util_row("rotation", 100, 0.1, -0.4, 0.7, variant="TC--"),
            _util_row("rotation", 1000, 0.0, -0.5, inf, variant="TC--"),
            _util_row("rotation", 100, 0.1, -inf, inf, task="pose"),
            _util_row("rotation", 1000, 0.1, -inf, inf, task="pose"),
        ]
    )
    power = pd.DataFrame(
        {"task": "classification", "finetune_variant": "TC--", "label_budget": [100], "min_detectable_u": [1.0]}
    )
    lines = answer(util, power)
    assert lines[0] == (
        "classification (-C--): rotation saves labels at 100: U = +0.80 [+0.20, +1.50] (scratch needs 1.8× the "
        "labels) (interior budgets 100 labels)."
    )
    assert lines[1] == (
        "classification (TC--): no method's utility differs measurably from 0 at any budget (interior budgets "
        "100 labels: the intervals together span [-0.40, +0.70]; the smallest U its seed noise detects there "
        "with 80 % power is 1.00)."
    )
    assert "has no interior budget (100, 1000 labels" in lines[2]
    # interior budgets that see different effects: each one's minimum detectable U, "none" where none is seen
    wide = pd.concat([util[:3], pd.DataFrame([_util_row("rotation", 300, 0.1, -0.2, 0.5)])], ignore_index=True)
    wide_power = pd.DataFrame(
        {"task": "classification", "label_budget": [100, 300], "min_detectable_u": [0.5, float("nan")]}
    )
    assert answer(wide, wide_power)[0].endswith(
        "(interior budgets 100–300 labels; the smallest U its seed noise detects with 80 % power is 0.50 / none "
        "at 100 / 300 labels)."
    )
    assert answer(util.assign(ci_low=float("nan"), ci_high=float("nan")))[0].startswith("No finetuned utility")
    chance = pd.DataFrame({"task": ["pose"], "chance": [0.2], "scratch_top": [0.31], "learned": [False]})
    assert answer(util, power, chance)[2] == (
        "pose (-C--): not learned at this compute (scratch's mean at its largest budget, 0.310, is below twice the "
        "chance level 0.200), so its utility says nothing."
    )


def test_probe_contrast_compares_the_linear_ranking_with_finetuning_utility():
    from selfsup.analyse.analysis import probe_contrast

    def row(method, protocol, n, value, lo, hi):
        return {**_util_row(method, n, 0.0, lo, hi), "protocol": protocol, "value": value}

    rows = [
        row("simclr", "linear", 20, 0.30, -1.0, -0.5),
        row("rotation", "linear", 20, 0.20, -1.0, -0.5),
        row("simclr", "linear", 40, 0.45, -1.0, -0.5),
        row("rotation", "linear", 40, 0.25, -1.0, -0.5),
        row("simclr", "linear", 1000, 0.7, float("nan"), float("nan")),  # all labels: no finetuned twin
        row("simclr", "finetune", 20, 0.5, -0.3, 0.4),
        row("rotation", "finetune", 20, 0.5, -0.2, 0.6),
        row("simclr", "finetune", 40, 0.6, -0.4, 0.2),
        row("rotation", "finetune", 40, 0.6, -0.1, 0.5),
    ]
    util = pd.DataFrame(rows)
    assert probe_contrast(util) == [
        "classification, linear probe against finetuning: the linear probe ranks simclr > rotation at 2 of 2 "
        "budgets (simclr ahead by 0.10–0.20); finetuned, their utility intervals overlap at every budget, so here "
        "the linear ranking does not predict which pretraining saves more labels."
    ]
    # finetuning that does tell them apart at 40 labels
    util.loc[(util.protocol == "finetune") & (util.method == "rotation") & (util.label_budget == 40), "ci_low"] = 0.3
    assert probe_contrast(util)[0].endswith("finetuned, their utility intervals are disjoint at 40 labels.")
    assert probe_contrast(util[util.method == "simclr"]) == []  # one method: nothing to rank
