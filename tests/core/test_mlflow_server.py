"""A real MLflow tracking server on 127.0.0.1 receives a stage's run, which we read back."""

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pandas as pd
import pytest
from conftest import BIN, run_cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _server(root, *extra: str, env_extra: dict | None = None):
    """``mlflow server`` on 127.0.0.1 (loopback only): yields its URL once it answers, kills it afterwards."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # the server uses only its flags
    env.update({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env_extra or {})})
    proc = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root}/mlflow.db",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            *extra,
        ],
        stdout=open(root / "server.log", "w"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except urllib.error.HTTPError:
                break  # it answers (the auth app may refuse even /health)
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(
                        "mlflow server did not start: " + (root / "server.log").read_text()[-2000:]
                    ) from None
                time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        proc.wait()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    with _server(tmp_path_factory.mktemp("server")) as url:
        yield url


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """The server as docs/scaling.md shows it: MLflow's basic-auth app, admin password from a config file."""
    root = tmp_path_factory.mktemp("auth_server")
    password = "s3lfsup-" + os.urandom(8).hex()
    (root / "auth.ini").write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{root}/basic_auth.db\nadmin_username = admin\nadmin_password = {password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    with _server(
        root,
        "--app-name",
        "basic-auth",
        env_extra={
            "MLFLOW_AUTH_CONFIG_PATH": str(root / "auth.ini"),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": os.urandom(16).hex(),
        },
    ) as url:
        yield url, password


def _status(url: str, auth: tuple[str, str] | None = None) -> int:
    import base64

    req = urllib.request.Request(url + "/api/2.0/mlflow/experiments/search?max_results=5")
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        return urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code


def test_basic_auth_server_refuses_anonymous_and_wrong_logins(auth_server, tmp_path):
    url, password = auth_server
    assert _status(url) == 401
    assert _status(url, ("admin", "wrong-password")) == 401
    assert _status(url, ("admin", password)) == 200
    # a stage logs with the credentials in the environment, as docs/scaling.md says
    rows = [
        {
            "method": m,
            "task": "classification",
            "protocol": "finetune",
            "label_budget": n,
            "seed": 0,
            "metric": "accuracy",
            "value": v,
        }
        for m, d in (("scratch", 0.0), ("rotation", 0.05))
        for n, v in ((10, 0.2 + d), (100, 0.5 + d))
    ]
    import pandas as pd

    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": url,
        "MLFLOW_TRACKING_USERNAME": "admin",
        "MLFLOW_TRACKING_PASSWORD": password,
        "MLFLOW_EXPERIMENT_NAME": "auth-test",
    }
    r = subprocess.run(
        [
            str(BIN / "selfsup"),
            "report",
            "--results",
            str(tmp_path / "results.csv"),
            "--out",
            str(tmp_path / "rep"),
            "--bootstrap",
            "10",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    no_login = {k: v for k, v in env.items() if not k.startswith("MLFLOW_TRACKING_")} | {"MLFLOW_TRACKING_URI": url}
    r = subprocess.run(
        [
            str(BIN / "selfsup"),
            "report",
            "--results",
            str(tmp_path / "results.csv"),
            "--out",
            str(tmp_path / "rep2"),
            "--bootstrap",
            "10",
        ],
        capture_output=True,
        text=True,
        env=no_login,
        timeout=300,
    )
    assert r.returncode != 0 and not (tmp_path / "rep2" / "index.html").exists()
    assert len(r.stderr.strip().splitlines()) == 1 and "not authenticated" in r.stderr
    assert r.stderr.startswith(f"error: MLflow tracking at {url}")


def test_a_pretrain_run_reaches_the_server_and_reads_back(mlflow_server, tiny_dataset, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from selfsup.pretrain.run import PretrainConfig, pretrain

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "server-test")
    meta = pretrain(
        PretrainConfig("rotation", width=0.125, epochs=2, batch_size=16), tiny_dataset, tmp_path / "rot", progress=False
    )
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("server-test")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["method"] == "rotation" and run.data.params["epochs"] == "2"
    assert run.data.tags["dataset_hash"] == meta["dataset_hash"]
    assert run.data.tags["stage"] == "pretrain" and len(run.data.tags["git_commit"]) == 40
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 2  # one point per epoch
    # the UI opens the experiment on its training runs, and every run names the data it read
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    (used,) = run.inputs.dataset_inputs
    assert used.dataset.digest == meta["dataset_hash"] and used.dataset.name == "single -C--"
    assert json.loads(used.dataset.source) == {"uri": str(tiny_dataset)}
    # the backbone is a version in the Model Registry, with its lineage
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "backbone")}
    assert {"backbone/backbone.safetensors", "backbone/meta.json"} <= artifacts
    (version,) = client.search_model_versions("name = 'selfsup-single-resnet9-rotation'")
    assert meta["model_uri"] == f"models:/selfsup-single-resnet9-rotation/{version.version}"
    assert version.run_id == run.info.run_id and version.tags["dataset_digest"] == meta["dataset_hash"]
    assert version.tags["git_commit"] == run.data.tags["git_commit"]
    # ... that finetuning loads by its URI exactly as from the folder
    env = {"MLFLOW_TRACKING_URI": mlflow_server, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    common = ["finetune", "--data", str(tiny_dataset), "--budgets", "20", "--seeds", "0", "--steps", "4"]
    common += ["--epochs", "1", "--batch-size", "8"]
    for name, init in (("folder", str(tmp_path / "rot")), ("registry", meta["model_uri"])):
        r = run_cli(*common, "--init", init, "--out", str(tmp_path / name), env=env)
        assert r.returncode == 0, r.stderr
    a, b = (pd.read_csv(tmp_path / name / "results.csv") for name in ("folder", "registry"))
    assert a["value"].tolist() == b["value"].tolist()
    r = run_cli(*common, "--init", "models:/selfsup-single-resnet9-rotation/99", "--out", str(tmp_path / "x"), env=env)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "models:/" in r.stderr
