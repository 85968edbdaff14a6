"""The committed default study answers its question (issue 26): checked on its own files, so a
re-committed study that no longer measures a curve fails here."""

import math

import numpy as np
import pandas as pd
import yaml
from conftest import REPO

from selfsup.core import config

STUDY = REPO / "reports" / "studies" / "default"


def test_the_committed_default_study_is_the_default_profile():
    committed = config.parse(yaml.safe_load((STUDY / "params.yaml").read_text()))
    assert committed == config.Params() == config.parse(yaml.safe_load((REPO / "params.yaml").read_text()))


def test_the_default_study_measures_a_rising_scratch_curve_with_power():
    power = pd.read_csv(STUDY / "report" / "power.csv")
    p = power[power.task == "classification"].sort_values("label_budget")
    n = p.label_budget.to_numpy()
    assert len(n) >= 6 and n[-1] / n[0] >= 30 and (p["where"] == "interior").sum() >= 4
    assert (p.rise_over_se.iloc[1:] > 2).all(), p[["label_budget", "mean", "rise_over_se"]]
    assert p["mean"].iloc[-1] < 0.95
    inner = p[p["where"] == "interior"]
    assert (inner.power_u1 >= 0.8).all() and inner.min_detectable_u.notna().all()


def test_the_default_study_has_finite_utilities_inside_its_curve_for_two_methods():
    util = pd.read_csv(STUDY / "report" / "utility.csv")
    ft = util[(util.task == "classification") & (util.protocol == "finetune")]
    budgets = sorted(ft.label_budget.unique())
    inner = ft[(ft.label_budget > budgets[0]) & (ft.label_budget < budgets[-1])]
    finite = inner[(inner.status == "ok") & np.isfinite(inner.ci_low) & np.isfinite(inner.ci_high)]
    per_method = finite.groupby("method").label_budget.nunique()
    assert (per_method == len(budgets) - 2).sum() >= 2, inner
    chance = pd.read_csv(STUDY / "report" / "chance.csv").set_index("task")
    assert chance.loc["classification", "learned"] and not math.isnan(chance.loc["classification", "chance"])
    probes = set(util[util.task == "classification"].protocol)
    assert {"finetune", "linear"} <= probes and any(p.startswith("knn") for p in probes)
