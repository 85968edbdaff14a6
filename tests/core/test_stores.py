"""A tracking server or an Optuna database that is down is reported in seconds, before any work: timed
here through the real CLI against a closed port and against a server that accepts connections but never
answers (what a hung server looks like), with MLflow's and the driver's own timeouts."""

from __future__ import annotations

import contextlib
import socket
import time

import pytest
from conftest import run_cli

LIMIT_S = 15.0  # the bound: a user learns it in seconds


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


@contextlib.contextmanager
def _silent_server():
    """A port whose connections the kernel accepts (a listening socket's backlog) but no one ever answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def _finetune(dataset, out, env: dict | None = None, *extra):
    args = ["finetune", "--task", "classification", "--data", str(dataset), "--out", str(out), "--budgets", "8"]
    t0 = time.perf_counter()
    r = run_cli(*args, "--steps", "2", "--epochs", "1", "--width", "0.125", *extra, env=env, timeout=120)
    return r, time.perf_counter() - t0


def _one_line(r) -> str:
    lines = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stdout + r.stderr
    return lines[0]


@pytest.mark.parametrize("server", ["closed", "silent"])
def test_a_tracking_server_that_is_down_fails_in_seconds_before_any_work(tiny_dataset, tmp_path, server):
    with _silent_server() if server == "silent" else contextlib.nullcontext(_closed_port()) as port:
        uri = f"http://127.0.0.1:{port}"
        r, seconds = _finetune(tiny_dataset, tmp_path / "ft", {"MLFLOW_TRACKING_URI": uri})
    line = _one_line(r)
    assert f"MLflow tracking server '{uri}' is not reachable" in line and "MLFLOW_TRACKING_URI" in line, line
    assert seconds < LIMIT_S, f"{seconds:.1f} s"
    assert not (tmp_path / "ft").exists() or not any((tmp_path / "ft").rglob("*.*")), "work was done"


@pytest.mark.parametrize("server", ["closed", "silent"])
def test_an_optuna_database_that_is_down_fails_in_seconds(tiny_dataset, tiny_rotation, tmp_path, server):
    pytest.importorskip("pymysql")
    with _silent_server() if server == "silent" else contextlib.nullcontext(_closed_port()) as port:
        url = f"mysql+pymysql://optuna:secret@127.0.0.1:{port}/optuna"
        t0 = time.perf_counter()
        r = run_cli(
            *["tune", "--task", "classification", "--data", str(tiny_dataset), "--init", str(tiny_rotation)],
            *["--budget", "8", "--out", str(tmp_path / "tu"), "--storage", url],
            timeout=120,
        )
        seconds = time.perf_counter() - t0
    line = _one_line(r)
    assert f"'mysql+pymysql://optuna:***@127.0.0.1:{port}/optuna' is not reachable" in line, line
    assert "secret" not in line
    assert seconds < LIMIT_S, f"{seconds:.1f} s"
