"""Shared fixtures: a real tiny bpy render, an isolated MLflow store, the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: selfsup, dvc, mlflow
TINY = dict(set_name="single", variant="-C--", count=64, seed=0, resolution=32, samples=4)

# tests/ mirrors src/selfsup/ (one folder per stage); a few tests share helpers with another folder's
# tests (`from test_render import ...`), so every folder is importable whatever pytest collected first
sys.path[:0] = [str(d) for d in sorted(Path(__file__).parent.iterdir()) if d.is_dir() and d.name != "__pycache__"]


@pytest.fixture(scope="session", autouse=True)
def isolated_tracking(tmp_path_factory):
    """Every test logs to its own throw-away MLflow store, never to the repo's mlflow.db."""
    store = tmp_path_factory.mktemp("mlflow")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["DVC_NO_ANALYTICS"] = "1"
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    yield store


def _needs_bpy() -> None:
    """On a machine declared to have no Blender (``SELFSUP_NO_BPY=1``: the GPU machine of
    bench/gpu_check.py) a test that needs a render is skipped, not failed; everywhere else it renders."""
    if os.environ.get("SELFSUP_NO_BPY") == "1":
        pytest.skip("needs bpy (SELFSUP_NO_BPY=1)")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A real Cycles render: 64 images at 32×32, 4 samples per pixel."""
    _needs_bpy()
    from selfsup.data.render import render_dataset

    out = tmp_path_factory.mktemp("data") / "tiny"
    render_dataset(out, progress=False, **TINY)
    return out


@pytest.fixture(scope="session")
def tiny_pose(tmp_path_factory) -> Path:
    """A real render with the viewpoint factor on (pose bins vary only with V): 64 images at 32×32."""
    _needs_bpy()
    from selfsup.data.render import render_dataset

    out = tmp_path_factory.mktemp("data") / "tiny_pose"
    render_dataset(out, progress=False, **{**TINY, "variant": "-CV-"})
    return out


@pytest.fixture(scope="session")
def tiny_multi(tmp_path_factory) -> Path:
    """A real multi-object render with dense labels: 48 images at 64×64 (8×8 feature maps), 4 spp."""
    _needs_bpy()
    from selfsup.data.render import render_dataset

    out = tmp_path_factory.mktemp("data") / "tiny_multi"
    render_dataset(out, "multi", "-CV-", 48, seed=0, workers=1, resolution=64, samples=4, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_rotation(tiny_dataset, tmp_path_factory) -> Path:
    """A rotation backbone pretrained for one epoch on the tiny single-object set."""
    from selfsup.pretrain.run import PretrainConfig, pretrain

    out = tmp_path_factory.mktemp("models") / "rotation"
    pretrain(PretrainConfig("rotation", width=0.125, epochs=1, batch_size=16), tiny_dataset, out, progress=False)
    return out


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600):
    """``selfsup ARGS`` as a user runs it; returns the CompletedProcess."""
    return subprocess.run(
        [str(BIN / "selfsup"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture()
def s3_endpoint(tmp_path):
    """A local S3-compatible server (moto's server mode) on 127.0.0.1 with an empty bucket ``selfsup``;
    yields the endpoint URL. Credentials are dummies that moto accepts."""
    import socket
    import time
    import urllib.request

    import boto3

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "moto.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1)
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "moto.log").read_text()
                time.sleep(0.1)
        boto3.client(
            "s3", endpoint_url=url, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
        ).create_bucket(Bucket="selfsup")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
