"""The MLflow UI as a user opens it after a pipeline run: a real `mlflow server` on 127.0.0.1, the
stages run through the CLI against it, and the pages read in headless Chromium (as the report is)."""

import html
import json
import re
import urllib.parse

import pytest
from conftest import run_cli
from test_mlflow_server import _server
from test_report_browser import CHROMIUM, open_in_chromium_url

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (scripts/setup.sh installs it)")


@pytest.fixture(scope="module")
def pipeline_on_a_server(tmp_path_factory, tiny_dataset):
    """A tiny pretrain + two finetune sweeps logged to a fresh server; yields (url, experiment id, runs)."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("ui")
    with _server(root) as url:
        env = {"MLFLOW_TRACKING_URI": url, "MLFLOW_EXPERIMENT_NAME": "ui-test"}
        data = ["--data", str(tiny_dataset)]
        steps = ["--budgets", "20", "--seeds", "0", "--steps", "4", "--epochs", "1", "--batch-size", "8"]
        commands = [
            [
                "pretrain",
                "--method",
                "rotation",
                *data,
                "--out",
                str(root / "rot"),
                "--epochs",
                "1",
                "--batch-size",
                "16",
            ],
            ["finetune", *data, *steps, "--out", str(root / "scratch")],
            ["finetune", *data, *steps, "--init", str(root / "rot"), "--out", str(root / "ft-rot")],
        ]
        for args in commands:
            r = run_cli(*args, env=env)
            assert r.returncode == 0, r.stderr
        client = MlflowClient(url)
        exp = client.get_experiment_by_name("ui-test")
        runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
        yield url, exp.experiment_id, runs


def test_the_experiment_opens_on_its_training_runs_with_their_datasets(pipeline_on_a_server):
    from mlflow.tracking import MlflowClient

    url, exp_id, runs = pipeline_on_a_server
    # the experiment says it trains models; MLflow 3.17's UI follows its header toggle (GenAI / Model
    # training, remembered by the browser), which this URL sets, as the README's link does
    assert MlflowClient(url).get_experiment(exp_id).tags["mlflow.experimentKind"] == "custom_model_development"
    dom, errors = open_in_chromium_url(f"{url}/#/experiments/{exp_id}?workflowType=machine_learning")
    text = _text(dom)
    assert not errors, errors
    assert "Run Name" in text and "Dataset" in text and "Traces 0" not in text  # the runs table, not GenAI's overview
    for name in ("pretrain-rotation", "finetune-scratch-classification-finetune"):
        assert name in runs and name in text  # the stage runs...
    digest = runs["pretrain-rotation"].data.tags["dataset_hash"]
    assert f"single -C-- ({digest})" in text  # ...with the dataset each one read


def test_the_registered_backbone_is_in_the_model_registry_page(pipeline_on_a_server):
    url, _, _ = pipeline_on_a_server
    dom, errors = open_in_chromium_url(f"{url}/#/models?workflowType=machine_learning")
    assert not errors, errors
    assert "selfsup-single-resnet9-rotation" in _text(dom)


def test_the_compare_view_of_two_finetune_runs_renders(pipeline_on_a_server):
    url, exp_id, runs = pipeline_on_a_server
    names = sorted(n for n in runs if n.startswith("finetune-"))
    assert len(names) == 2
    query = urllib.parse.urlencode(
        {"runs": json.dumps([runs[n].info.run_id for n in names]), "experiments": json.dumps([exp_id])}
    )
    dom, errors = open_in_chromium_url(f"{url}/#/compare-runs?{query}")
    text = _text(dom)
    assert not errors, errors
    assert "Comparing 2 Runs" in text and all(n in text for n in names)
    assert "label_budget" in text or "budgets" in text  # their parameter table


def _text(dom: str) -> str:
    """The page's visible text, whitespace collapsed."""
    dom = re.sub(r"<script.*?</script>|<style.*?</style>", "", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))
