"""The pipeline shells: `dvc repro` → push (local folder and S3) → pull from S3 in a fresh git repo; `mlflow run`."""

import io
import json
import os
import shutil
import subprocess

import pandas as pd
import yaml
from conftest import BIN, REPO

TINY_PARAMS = {  # every stage kind runs, on fewer inits and tasks than the default study
    "render": {"samples": 4},
    "study": {"inits": ["scratch", "rotation"]},
    "pretrain_single": {"width": 0.125, "epochs": 1, "batch_size": 16},
    "pretrain_multi": {"width": 0.125, "epochs": 1, "batch_size": 4},
    "finetune_single": {
        "tasks": ["classification"],
        "budgets": "5,10",
        "seeds": "0",
        "steps": 4,
        "epochs": 1,
        "batch_size": 8,
        "tune_trials": 2,
        "tune_budget": 5,
    },
    "finetune_multi": {
        "tasks": ["depth"],
        "budgets": "4,8",
        "seeds": "0",
        "steps": 3,
        "epochs": 1,
        "batch_size": 4,
        "tune_budget": 4,
    },
    "frozen": {"methods": ["rotation"], "protocols": ["frozen-3"]},
    "probe": {"methods": ["rotation"], "protocols": ["knn"]},
    "report": {"bootstrap": 10},
}


def _sh(*args, cwd, timeout=900):
    # mlflow.set_experiment() in this test process exports MLFLOW_EXPERIMENT_ID; a user's shell has none
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_EXPERIMENT_ID"}
    r = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, f"{' '.join(args)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def _tiny_project(proj, **sections) -> None:
    """A git + DVC project of this repository's pipeline and DVC config at TINY_PARAMS (updated by
    ``sections``), nothing run yet."""
    proj.mkdir()
    shutil.copytree(REPO / "src", proj / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "dvc.yaml", proj)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    # the default study has no multi-object set (dense tasks are the `dense` profile's); this test runs both kinds
    params["datasets"]["multi"] = {"set": "multi", "variant": "-CV-", "count": 24, "resolution": 32}
    params["study"]["multi"] = ["multi"]
    for section, values in {**TINY_PARAMS, **sections}.items():
        params[section].update(values)
    params["datasets"]["single"].update(count=48, resolution=32)
    (proj / "params.yaml").write_text(yaml.safe_dump(params))
    _sh("git", "init", "-q", cwd=proj)
    _sh(str(BIN / "dvc"), "init", "-q", cwd=proj)
    for name in ("config", "plots"):  # the project's own config (analytics off) and plot templates
        (shutil.copytree if name == "plots" else shutil.copy)(REPO / ".dvc" / name, proj / ".dvc" / name)


def _commit(proj, message: str) -> None:
    _sh("git", "add", "-A", cwd=proj)
    _sh("git", "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", message, cwd=proj)


def test_dvc_repro_push_pull_round_trip(tmp_path, s3_endpoint):
    proj, remote = tmp_path / "proj", tmp_path / "remote"
    _tiny_project(proj)
    dvc = str(BIN / "dvc")
    _sh(dvc, "remote", "add", "-d", "local", str(remote), cwd=proj)
    # object storage as docs/scaling.md configures it: an S3-compatible endpoint, credentials kept out of git
    _sh(dvc, "remote", "add", "s3", "s3://selfsup/cache", cwd=proj)
    _sh(dvc, "remote", "modify", "s3", "endpointurl", s3_endpoint, cwd=proj)
    for key, value in (("access_key_id", "test"), ("secret_access_key", "test"), ("region", "us-east-1")):
        _sh(dvc, "remote", "modify", "--local", "s3", key, value, cwd=proj)

    out = _sh(str(BIN / "selfsup"), "study", "--yes", cwd=proj)  # the estimate, then dvc repro
    assert "total" in out and "finetune" in out
    tuned = json.loads(
        (proj / "tuned" / "single" / "resnet9" / "rotation-classification" / "best_params.json").read_text()
    )
    assert tuned["trials"] == 2 and tuned["best_value"] is not None  # a real study fed the finetune stage
    results = pd.read_csv(proj / "reports" / "utility.csv")
    assert {(m, t, p) for m, t, p in zip(results.method, results.task, results.protocol)} == {
        ("rotation", "classification", "finetune"),
        ("rotation", "classification", "frozen-3"),  # the frozen_single stage (Fig. 8)
        ("rotation", "depth", "finetune"),
        ("rotation", "classification", "knn-cosine"),
    }  # utility against scratch, per task and protocol
    assert "Data and pipelines are up to date" in _sh(dvc, "status", cwd=proj)
    assert "metrics.json" in _sh(dvc, "metrics", "show", cwd=proj)
    _sh(dvc, "push", cwd=proj)
    _sh(dvc, "push", "-r", "s3", cwd=proj)
    import boto3

    s3 = boto3.client(
        "s3", endpoint_url=s3_endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    objects = s3.list_objects_v2(Bucket="selfsup", Prefix="cache/")
    local_files = [p for p in remote.rglob("*") if p.is_file()]
    assert objects["KeyCount"] == len(local_files) > 0  # the same content-addressed files in both remotes
    # what git tracks (dvc.lock, params, the uncached metrics file) is committed, as a user would
    _commit(proj, "study")

    before = (proj / "reports" / "index.html").read_bytes()
    shutil.rmtree(proj / ".dvc" / "cache")
    for out in ("data", "models", "tuned", "results", "reports"):
        shutil.rmtree(proj / out)
    _sh("git", "checkout", "--", ".", cwd=proj)  # a fresh clone: git files back, DVC outputs still missing
    assert not (proj / "data" / "single").exists()
    shutil.rmtree(remote)  # only the S3 copy is left
    _sh(dvc, "pull", "-r", "s3", cwd=proj)
    assert (proj / "reports" / "index.html").read_bytes() == before
    assert (proj / "data" / "single" / "images.npy").is_file()
    assert "Data and pipelines are up to date" in _sh(dvc, "status", cwd=proj)

    # parameter sweeps the DVC way: two queued experiments run from the pulled cache (only the stages
    # their parameter reaches rerun), listed side by side, their curves drawn together
    # (quoted: an unquoted comma list is a Hydra sweep, one experiment per value)
    _sh(dvc, "exp", "run", "--queue", "-n", "more-labels", "-S", 'finetune_single.budgets="5,12"', cwd=proj)
    _sh(dvc, "exp", "run", "--queue", "-n", "linear-interp", "-S", "report.interpolation=linear", cwd=proj)
    _sh(dvc, "exp", "run", "--run-all", "-j", "1", cwd=proj, timeout=1500)
    shown = _sh(dvc, "exp", "show", "--no-pager", "--csv", cwd=proj)
    table = pd.read_csv(io.StringIO(shown), dtype=str)
    exps = table[table.Experiment.isin(["more-labels", "linear-interp"])].set_index("Experiment")
    assert len(exps) == 2, shown
    (budgets,) = [c for c in table.columns if c.endswith("finetune_single.budgets")]
    assert exps.loc["more-labels", budgets] == "5,12" and exps.loc["linear-interp", budgets] == "5,10"
    assert any(c.startswith("utility") or "utility" in c for c in table.columns)  # metrics.json beside the params
    diff = json.loads(
        _sh(
            dvc,
            "plots",
            "diff",
            "more-labels",
            "linear-interp",
            "--json",
            "--targets",
            "reports/plots/curves",
            cwd=proj,
        )
    )
    assert not diff.get("errors"), diff["errors"]
    (plot,) = [p for name, ps in diff["data"].items() if name.endswith("classification.csv") for p in ps]
    rows = plot["content"]["data"]["values"]
    assert {r["rev"] for r in rows} == {"more-labels", "linear-interp"}  # both revisions, one line per series each
    finetuned = [r for r in rows if r["rev"] == "more-labels" and "(" not in r["series"]]  # not the probes
    assert {int(r["label_budget"]) for r in finetuned} == {5, 12}
    assert plot["content"]["encoding"]["strokeDash"]["field"] == "rev"  # the selfsup_curves template


def test_mlflow_run_finetune_entry_point(tiny_dataset, tmp_path):
    out = tmp_path / "ft"
    _sh(
        str(BIN / "mlflow"),
        "run",
        str(REPO),
        "-e",
        "finetune",
        "--env-manager",
        "local",
        "--experiment-name",
        "mlproject-test",
        "-P",
        f"data={tiny_dataset}",
        "-P",
        f"out={out}",
        "-P",
        "budgets=5,10",
        "-P",
        "seeds=0",
        "-P",
        "steps=3",
        "-P",
        "batch_size=8",
        cwd=tmp_path,
    )
    res = pd.read_csv(out / "results.csv")
    assert set(res.label_budget) == {5, 10} and set(res.method) == {"scratch"}

    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name("mlproject-test")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    assert parent[0].data.params["task"] == "classification"  # our stage logged into the run `mlflow run` made
    assert len(runs) == 1 + 2  # one child run per (budget, seed) cell


def test_mlflow_run_pretrain_entry_point_uses_the_methods_default_backbone(tiny_dataset, tmp_path):
    out = tmp_path / "cmc"
    _sh(
        str(BIN / "mlflow"),
        "run",
        str(REPO),
        "-e",
        "pretrain",
        "--env-manager",
        "local",
        "--experiment-name",
        "mlproject-pretrain",
        "-P",
        "method=cmc",
        "-P",
        f"data={tiny_dataset}",
        "-P",
        f"out={out}",
        "-P",
        "epochs=1",
        "-P",
        "batch_size=16",
        cwd=tmp_path,
    )
    meta = __import__("json").loads((out / "meta.json").read_text())
    assert meta["backbone"] == "resnet9_split" and meta["colour"] == "lab"


def test_mlflow_run_probe_entry_point(tiny_dataset, tiny_rotation, tmp_path):
    out = tmp_path / "knn"
    _sh(
        str(BIN / "mlflow"),
        "run",
        str(REPO),
        "-e",
        "probe",
        "--env-manager",
        "local",
        "--experiment-name",
        "mlproject-probe",
        "-P",
        f"data={tiny_dataset}",
        "-P",
        f"init={tiny_rotation}",
        "-P",
        f"out={out}",
        "-P",
        "protocol=knn",
        "-P",
        "budgets=5,10",
        "-P",
        "seeds=0",
        cwd=tmp_path,
    )
    res = pd.read_csv(out / "results.csv")
    assert set(res.protocol) == {"knn-cosine"} and set(res.method) == {"rotation"}


def test_dvc_pull_on_a_fresh_clone_without_a_team_remote_is_a_short_hint(tmp_path):
    # the project names its default remote `team` but defines none: each team adds its own storage
    # (README, "Sharing data and results with DVC"); until then `dvc pull` says so in one error line
    proj = tmp_path / "clone"
    proj.mkdir()
    for name in ("dvc.yaml", "dvc.lock", "params.yaml"):
        shutil.copy(REPO / name, proj)
    _sh("git", "init", "-q", cwd=proj)
    _sh(str(BIN / "dvc"), "init", "-q", cwd=proj)
    shutil.copy(REPO / ".dvc" / "config", proj / ".dvc" / "config")
    r = subprocess.run([str(BIN / "dvc"), "pull"], cwd=proj, capture_output=True, text=True, timeout=300)
    errors = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    assert r.returncode != 0 and len(errors) <= 2, errors
    assert "remote 'team' doesn't exist" in errors[-1]
