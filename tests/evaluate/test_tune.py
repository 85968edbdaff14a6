"""Optuna tuning: workers sharing one study lose and duplicate no trial; best parameters feed finetune."""

import json
import os
import subprocess

import optuna
import pytest
from conftest import BIN, run_cli
from mlflow.tracking import MlflowClient

from selfsup.core.errors import UserError
from selfsup.evaluate.finetune import FinetuneConfig
from selfsup.evaluate.tune import tune
from selfsup.evaluate.tuned import read_best

TINY = ["--steps", "2", "--epochs", "2", "--batch-size", "4", "--budget", "10"]


@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_two_workers_share_a_study_without_lost_or_duplicated_trials(tiny_dataset, tmp_path, storage):
    out = tmp_path / "tuned"
    url = f"sqlite:///{tmp_path / 'study.db'}" if storage == "sqlite" else str(tmp_path / "study.log")
    exp = f"tune-{storage}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_EXPERIMENT_ID"}
    env.update(MLFLOW_EXPERIMENT_NAME=exp, OMP_NUM_THREADS="1")
    cmd = [
        str(BIN / "selfsup"),
        "tune",
        "--data",
        str(tiny_dataset),
        "--out",
        str(out),
        "--trials",
        "6",
        "--storage",
        url,
        "--study-name",
        "shared",
        *TINY,
    ]
    workers = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    for w in workers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err[-2000:]

    if storage == "journal":
        from optuna.storages.journal import JournalFileBackend

        store = optuna.storages.JournalStorage(JournalFileBackend(url))
    else:
        store = url
    trials = optuna.load_study(study_name="shared", storage=store).get_trials(deepcopy=False)
    counted = [t for t in trials if t.number < 6]
    assert sorted(t.number for t in counted) == list(range(6))
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in counted)
    extra = [t for t in trials if t.number >= 6]
    assert len(extra) <= 2 and all(t.user_attrs.get("over_budget") for t in extra)  # one per worker at most

    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name(exp).experiment_id])
    study_runs = [r for r in runs if r.data.tags.get("stage") == "tune"]
    trial_runs = [r for r in runs if r.data.tags.get("stage") == "trial"]
    assert len(study_runs) == 1  # made by the worker that created the study
    assert sorted(int(r.data.tags["trial"]) for r in trial_runs) == list(range(6))
    assert {r.data.tags["mlflow.parentRunId"] for r in trial_runs} == {study_runs[0].info.run_id}

    from selfsup.analyse.tables import tuning_trials
    from selfsup.core.tracking import experiment_runs

    recorded = tuning_trials(experiment_runs(exp))
    assert recorded[["trials", "trial_runs"]].values.tolist() == [[6, 6]]  # what the report shows

    best = json.loads((out / "best_params.json").read_text())
    assert best["trials"] == 6 and set(best["params"]) == {"lr", "weight_decay", "schedule"}
    assert best["best_value"] == max(t.value for t in counted if t.value is not None)


def test_best_params_feed_finetune(tiny_dataset, tmp_path):
    best = tune(
        "classification",
        tiny_dataset,
        tmp_path / "t",
        budget=10,
        trials=3,
        config=FinetuneConfig(steps=2, epochs=1, batch_size=4),
    )
    assert read_best(tmp_path / "t" / "best_params.json") == best["params"]
    r = run_cli(
        "finetune",
        "--data",
        str(tiny_dataset),
        "--out",
        str(tmp_path / "ft"),
        "--budgets",
        "10",
        "--seeds",
        "0",
        "--steps",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--width",
        "0.125",
        "--params-file",
        str(tmp_path / "t" / "best_params.json"),
    )
    assert r.returncode == 0, r.stderr


def test_zero_trials_write_the_given_values_and_bad_input_is_refused(tiny_dataset, tmp_path):
    best = tune(
        "classification",
        tiny_dataset,
        tmp_path / "z",
        budget=10,
        trials=0,
        config=FinetuneConfig(lr=0.01, weight_decay=0.0, schedule="linear"),
    )
    assert best["params"] == {"lr": 0.01, "weight_decay": 0.0, "schedule": "linear"}
    with pytest.raises(UserError, match="'ftp://x'|'nowhere.db'"):
        tune("classification", tiny_dataset, tmp_path / "b", budget=10, trials=1, storage="nowhere.db")
    with pytest.raises(UserError, match="label budget 100000"):
        tune("classification", tiny_dataset, tmp_path / "b", budget=100000)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(UserError, match="broken.json"):
        read_best(tmp_path / "broken.json")


def test_every_method_knob_is_a_constructor_argument_with_a_valid_range():
    import inspect

    from selfsup.pretrain.methods import METHODS, list_methods, method_knobs

    for name in list_methods():
        args = inspect.signature(METHODS.get(name)).parameters
        for knob, (low, high, scale) in method_knobs(name).items():
            assert knob in args and low < high and scale in ("log", "linear", "int"), (name, knob)
            assert low <= args[knob].default <= high, (name, knob)  # the default is inside what is searched


def test_tune_pretrain_searches_the_methods_knobs_scored_by_the_online_probe(tiny_dataset, tmp_path):
    out = tmp_path / "tuned"
    env = {"MLFLOW_EXPERIMENT_NAME": "tune-pretrain"}
    res = run_cli(
        "tune",
        "--pretrain",
        "simclr",
        "--data",
        str(tiny_dataset),
        "--out",
        str(out),
        "--trials",
        "3",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--width",
        "0.125",
        env=env,
    )
    assert res.returncode == 0, res.stderr
    best = json.loads((out / "best_params.json").read_text())
    assert best["trials"] == 3 and best["metric"] == "val_probe_acc" and 0 <= best["best_value"] <= 1
    assert set(best["params"]) == {"lr", "weight_decay", "schedule", "temperature"}
    assert not any((out / "trials").iterdir())  # trial backbones are not kept
    client = MlflowClient()
    exp = client.get_experiment_by_name("tune-pretrain")
    runs = client.search_runs([exp.experiment_id])
    study = [r for r in runs if r.data.tags.get("stage") == "tune"]
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == study[0].info.run_id]
    assert len(study) == 1 and len(trials) == 3
    assert all(r.data.tags["stage"] == "pretrain" and "method.temperature" in r.data.params for r in trials)
    # the best values feed pretraining
    res = run_cli(
        "pretrain",
        "--method",
        "simclr",
        "--data",
        str(tiny_dataset),
        "--out",
        str(tmp_path / "m"),
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--width",
        "0.125",
        "--params-file",
        str(out / "best_params.json"),
    )
    assert res.returncode == 0, res.stderr
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    assert meta["method.temperature"] == pytest.approx(best["params"]["temperature"])
    assert meta["lr"] == pytest.approx(best["params"]["lr"]) and meta["schedule"] == best["params"]["schedule"]
    res = run_cli("tune", "--pretrain", "scratch", "--data", str(tiny_dataset), "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "scratch" in res.stderr
