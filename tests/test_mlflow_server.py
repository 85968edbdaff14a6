"""A real MLflow tracking server on 127.0.0.1 receives a stage's run, which we read back."""

import os
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import BIN


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # the server uses only its flags
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    proc = subprocess.Popen([str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
                             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            stdout=open(root / "server.log", "w"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if urllib.request.urlopen(url + "/health", timeout=2).status == 200:
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("mlflow server did not start") from None
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


def test_a_pretrain_run_reaches_the_server_and_reads_back(mlflow_server, tiny_dataset, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from selfsup.pretrain import pretrain

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "server-test")
    meta = pretrain("rotation", tiny_dataset, tmp_path / "rot", width=0.125, epochs=2, batch_size=16,
                    progress=False)
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("server-test")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["method"] == "rotation" and run.data.params["epochs"] == "2"
    assert run.data.tags["dataset_hash"] == meta["dataset_hash"]
    assert run.data.tags["stage"] == "pretrain" and len(run.data.tags["git_commit"]) == 40
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 2  # one point per epoch
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"backbone.safetensors", "meta.json"} <= artifacts
