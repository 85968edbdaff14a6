"""bench/gpu_check.py, the one prepared check for a lent GPU, runs here in its tiny CPU form, with the
packages the GPU machine lacks (bpy, mlflow, optuna, plotly, dvc) made unimportable: the script
cannot rot before a GPU is lent (issue 28)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ABSENT = ("bpy", "mlflow", "optuna", "plotly", "dvc")
BLOCKER = f"""
import sys
class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT!r}:
            raise ImportError(f"{{name}} is not installed on the GPU machine")
        return None
sys.meta_path.insert(0, _Absent())
"""


def test_the_gpu_check_dry_runs_on_the_cpu_without_the_packages_the_gpu_machine_lacks(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO / "src")]), "OMP_NUM_THREADS": "2"}
    env.pop("OUT", None)
    p = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--tiny", "--device", "cpu", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads(out.read_text())
    steps = report["steps"]
    assert list(steps) == ["peak", "autocast", "tests", "throughput", "sweep", "study"]
    for name, step in steps.items():
        assert step["status"] == "ok", (name, step.get("status"), step.get("traceback"))
    assert steps["peak"]["bf16_tflops"] > 0 and steps["peak"]["copy_gb_per_s"] > 0
    assert steps["autocast"]["stacked_forward_backward"]["ok"] is True
    assert steps["tests"]["summary"]["failed"] == 0 and steps["tests"]["summary"]["passed"] > 0
    figures = [v for v in steps["throughput"].values() if isinstance(v, dict)]
    assert len(figures) == 4 and all("error" not in f and f["images_per_s"] > 0 for f in figures), figures
    assert steps["sweep"]["stack_1"]["speedup"] == 1.0 and "largest_accuracy_difference" in steps["sweep"]
    study = steps["study"]
    assert study["finetune_rows"] == 4 and study["probe_rows"] == 4
    if study["killed_mid_run"]:  # --deterministic on the CPU: the resumed run is bit-exact
        assert study["resume_largest_weight_difference"] == 0.0
