import json

import pandas as pd
import pytest
from conftest import run_cli

from selfsup.core.errors import UserError
from selfsup.evaluate.finetune import FinetuneConfig, finetune
from selfsup.report.page import load_results, make_report

TINY_FT = FinetuneConfig(steps=4, epochs=2, batch_size=8)


def test_finetune_writes_long_results_on_the_test_split_and_resumes(tiny_dataset, tmp_path):
    out = tmp_path / "scratch"
    res = finetune(
        "classification", tiny_dataset, out, budgets=[5, 10], seeds=[0, 1], width=0.125, config=TINY_FT, progress=False
    )
    assert list(res.columns[:7]) == ["method", "task", "protocol", "label_budget", "seed", "metric", "value"]
    assert len(res) == 4 and set(res.method) == {"scratch"} and res.value.between(0, 1).all()
    on_disk = pd.read_csv(out / "results.csv")
    pd.testing.assert_frame_equal(on_disk[res.columns[:7]], res[res.columns[:7]], check_dtype=False)
    # a rerun keeps the finished cells instead of training them again
    cell = out / "cells" / "b5_s0.json"
    doc = json.loads(cell.read_text())
    doc["test"]["accuracy"] = 0.123456
    cell.write_text(json.dumps(doc))
    again = finetune(
        "classification", tiny_dataset, out, budgets=[5, 10], seeds=[0, 1], width=0.125, config=TINY_FT, progress=False
    )
    assert 0.123456 in again.value.tolist()


def test_finetune_from_a_pretrained_backbone(tiny_pose, tmp_path):
    from selfsup.pretrain.run import PretrainConfig, pretrain

    pretrain(
        PretrainConfig("rotation", width=0.125, epochs=1, batch_size=16), tiny_pose, tmp_path / "rot", progress=False
    )
    res = finetune(
        "pose",
        tiny_pose,
        tmp_path / "ft",
        init=tmp_path / "rot",
        budgets=[10],
        seeds=[0],
        config=TINY_FT,
        progress=False,
    )
    assert set(res.method) == {"rotation"} and set(res.task) == {"pose"}
    # chance: what a learner knowing only the training prior scores; a class-balanced budget (2 per bin) makes it 1/5
    assert res.chance.unique().tolist() == pytest.approx([0.2])


def test_pose_on_a_variant_without_viewpoint_change_is_one_clear_error(tiny_dataset, tmp_path):
    r = run_cli("finetune", "--task", "pose", "--data", str(tiny_dataset), "--out", str(tmp_path / "p"))
    assert r.returncode != 0 and not (tmp_path / "p").exists()
    assert r.stderr.strip().splitlines() == [
        f"error: dataset folder {str(tiny_dataset)!r}: every pose label is 0, so there is nothing to learn: "
        "the pose varies only with the viewpoint factor V on (render a variant such as '--V-')"
    ]


def _write_results(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


def test_report_from_a_hand_made_table(tmp_path):
    rows = [
        {
            "method": m,
            "task": "classification",
            "protocol": "finetune",
            "label_budget": n,
            "seed": s,
            "metric": "accuracy",
            "value": v + 0.01 * s,
        }
        for m, curve in {"scratch": [0.3, 0.5, 0.7], "rotation": [0.5, 0.6, 0.9]}.items()
        for n, v in zip([100, 500, 2500], curve)
        for s in (0, 1)
    ]
    _write_results(tmp_path / "a" / "results.csv", [r for r in rows if r["method"] == "scratch"])
    _write_results(tmp_path / "b.csv", [r for r in rows if r["method"] != "scratch"])
    r = run_cli(
        "report",
        "--results",
        str(tmp_path / "a"),
        "--results",
        str(tmp_path / "b.csv"),
        "--out",
        str(tmp_path / "rep"),
        "--bootstrap",
        "50",
    )
    assert r.returncode == 0, r.stderr
    util = pd.read_csv(tmp_path / "rep" / "utility.csv")
    assert list(util.columns[:8]) == [
        "method",
        "task",
        "protocol",
        "label_budget",
        "utility",
        "ci_low",
        "ci_high",
        "status",
    ]
    by_n = util.set_index("label_budget")
    assert by_n.loc[100, "status"] == "ok" and by_n.loc[100, "utility"] == pytest.approx(4.0, abs=0.3)
    assert by_n.loc[2500, "status"] == "lower_bound"
    page = (tmp_path / "rep" / "index.html").read_text()
    assert '<script src="plotly.min.js">' in page and "cdn.plot.ly" not in page
    assert 'id="classification-metric"' in page and 'id="classification-utility"' in page
    assert (tmp_path / "rep" / "plotly.min.js").stat().st_size > 1_000_000
    assert json.loads((tmp_path / "rep" / "metrics.json").read_text())["utility"]
    # the long tables behind `dvc plots` (dvc.yaml, template .dvc/plots/selfsup_curves.json)
    curve = pd.read_csv(tmp_path / "rep" / "plots" / "curves" / "classification.csv")
    assert list(curve.columns) == ["label_budget", "series", "mean", "ci_low", "ci_high"]
    assert set(curve.series) == {"scratch", "rotation"} and len(curve) == 6
    assert curve.set_index(["series", "label_budget"]).loc[("rotation", 500), "mean"] == pytest.approx(0.605)
    u = pd.read_csv(tmp_path / "rep" / "plots" / "utility" / "classification.csv")
    assert set(u.series) == {"rotation"} and u.set_index("label_budget").loc[100, "utility"] == pytest.approx(
        by_n.loc[100, "utility"]
    )


def test_bad_results_files_are_named(tmp_path):
    bad = tmp_path / "results.csv"
    bad.write_text("method,task\nscratch,classification\n")
    with pytest.raises(UserError, match="lacks column"):
        load_results([bad])
    with pytest.raises(UserError, match="does not exist"):
        make_report([tmp_path / "nope.csv"], tmp_path / "out")


def test_report_reads_cells_from_an_mlflow_experiment(tiny_dataset, tmp_path, monkeypatch):
    """Results logged to MLflow come back as the same long table a results.csv gives."""
    from selfsup.evaluate.finetune import FinetuneConfig, finetune

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "report-from-mlflow")
    res = finetune(
        "classification",
        tiny_dataset,
        tmp_path / "ft",
        None,
        budgets=[5, 10],
        seeds=[0],
        width=0.125,
        config=FinetuneConfig(steps=2, epochs=2, batch_size=4),  # 2 epochs: the total is not the last epoch's
        progress=False,
    )
    make_report([], tmp_path / "rep", n_boot=5, mlflow_experiment="report-from-mlflow")
    curves = pd.read_csv(tmp_path / "rep" / "curves.csv")
    acc = res[res.metric == "accuracy"].set_index("label_budget").value
    assert dict(zip(curves.label_budget, curves["mean"])) == pytest.approx(acc.to_dict())
    compute = pd.read_csv(tmp_path / "rep" / "compute.csv")
    assert "finetune" in set(compute.stage) and (compute.wall_s > 0).all()
    # the cost in machine-independent terms, summed over the stage's cells: 2 cells × 2 steps × 4 images,
    # each ≈ 9.09 GFLOP (full ResNet9, 64², forward + backward; notes/perf.md) × 0.125² × (32/64)²
    ft = compute[compute.stage == "finetune"].iloc[0]
    assert ft.train_images == 16
    assert ft.train_gflop / 16 == pytest.approx(9.09 * 0.125**2 / 4, rel=0.2)
    with pytest.raises(UserError, match="'no-such-experiment'"):
        make_report([], tmp_path / "rep2", mlflow_experiment="no-such-experiment")


def test_cells_finished_on_other_pretrained_weights_are_trained_again(tiny_dataset, tmp_path):
    from selfsup.pretrain.run import PretrainConfig, pretrain

    def cell_hash():
        finetune(
            "classification",
            tiny_dataset,
            tmp_path / "ft",
            init=tmp_path / "rot",
            budgets=[8],
            seeds=[0],
            config=TINY_FT,
            progress=False,
        )
        return json.loads((tmp_path / "ft" / "cells" / "b8_s0.json").read_text())["settings_hash"]

    pretrain(
        PretrainConfig("rotation", width=0.125, epochs=1, batch_size=16), tiny_dataset, tmp_path / "rot", progress=False
    )
    first = cell_hash()
    assert cell_hash() == first  # same weights: the finished cell is reused
    pretrain(
        PretrainConfig("rotation", width=0.125, epochs=1, batch_size=16, seed=1),
        tiny_dataset,
        tmp_path / "rot",
        progress=False,
        replace=True,
    )
    assert cell_hash() != first  # same settings, new weights (a dvc repro after pretraining changed)
