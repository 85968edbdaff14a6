"""Factor read-out probes: scores against chance on simulated features with a known answer, and the
real command on a tiny render."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_cli

from selfsup.evaluate.readout import FACTORS, r2, read_out


def _factor(name):
    return next(f for f in FACTORS if f.name == name)


@pytest.mark.parametrize("kept", [True, False])
def test_a_kept_factor_reads_out_well_above_chance_and_a_lost_one_does_not(kept):
    """Features that hold the light angle (or only noise) → R² near 1 (or ≤ chance 0); the same for a
    categorical factor against its majority class."""
    rng = np.random.default_rng(0)
    n = {"train": 400, "val": 100, "test": 100}
    angle = {s: rng.uniform(-2, 2, size=k) for s, k in n.items()}
    cls = {s: rng.integers(0, 4, size=k) for s, k in n.items()}
    feats = {}
    for s in n:
        kept_part = np.stack([np.sin(angle[s]), np.cos(angle[s]), *np.eye(4)[cls[s]].T], 1)
        signal = kept_part if kept else rng.normal(size=kept_part.shape)
        feats[s] = torch.as_tensor(np.concatenate([signal, rng.normal(size=(n[s], 6))], 1))
    light = read_out(_factor("light"), feats, {s: angle[s] for s in n})
    texture = read_out(_factor("texture"), feats, cls)
    assert light["metric"] == "r2" and light["chance"] == 0.0
    assert texture["metric"] == "accuracy" and 0.15 < texture["chance"] < 0.4
    if kept:
        assert light["value"] > 0.95 and texture["value"] > 0.95
    else:
        assert light["value"] < 0.1 and texture["value"] < texture["chance"] + 0.15


def test_a_factor_the_variant_holds_constant_has_nothing_to_read_out():
    feats = {s: torch.randn(30, 4) for s in ("train", "val", "test")}
    assert read_out(_factor("light"), feats, {s: np.full(30, 0.3) for s in feats}) == {"status": "constant"}
    assert read_out(_factor("texture"), feats, {s: np.zeros(30, int) for s in feats}) == {"status": "constant"}


def test_r2_of_the_train_mean_is_zero_and_of_the_truth_is_one():
    y = torch.randn(50, 2, dtype=torch.float64)
    assert r2(y, y, y.mean(0)) == pytest.approx(1.0)
    assert r2(y.mean(0).expand_as(y), y, y.mean(0)) == pytest.approx(0.0)


def test_readout_command_on_a_tiny_render(tiny_dataset, tiny_rotation, tmp_path):
    r = run_cli("readout", "--data", str(tiny_dataset), "--init", str(tiny_rotation), "--out", str(tmp_path / "r"))
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(tmp_path / "r" / "readout.csv")
    assert list(table.factor) == [f.name for f in FACTORS] and set(table.method) == {"rotation"}
    ok = table[table.status == "ok"]
    assert set(ok.metric) <= {"accuracy", "r2"} and np.isfinite(ok.value).all()
    assert (table[table.factor == "light"].status == "constant").all()  # the tiny set's variant has L off
    r = run_cli("readout", "--data", str(tmp_path / "nowhere"), "--init", str(tiny_rotation), "--out", str(tmp_path))
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "nowhere" in r.stderr
