"""The job examples in deploy/: a Slurm array and a Kubernetes indexed Job split one dvc stage into
independent jobs; `dvc repro STAGE` then merges their pieces without redoing them."""

import json
import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import yaml
from conftest import BIN, REPO
from test_study import TINY

from selfsup.data.dataset import load_dataset

FT_STAGE = "finetune_single@single-resnet9-rotation-classification"


def _project(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copytree(REPO / "src", proj / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(REPO / "deploy", proj / "deploy")
    shutil.copy(REPO / "dvc.yaml", proj)
    params = {**TINY, "finetune_single": {**TINY["finetune_single"], "seeds": "0,1"}}
    (proj / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=proj, check=True)
    return proj


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_EXPERIMENT_ID"}
    return {**env, **{k: str(v) for k, v in extra.items()}}


def _run_all(cmds, cwd):
    procs = [
        subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for cmd, env in cmds
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
    return outs


def _dvc(*args, cwd):
    r = subprocess.run([str(BIN / "dvc"), *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r.stdout


def test_slurm_array_then_dvc_repro_merges_render_shards(tmp_path):
    proj = _project(tmp_path)
    tasks = [
        (
            ["bash", "deploy/slurm-array.sh"],  # what sbatch runs on each node, with Slurm's variables
            _env(STAGE="render@single", SLURM_ARRAY_TASK_ID=i, SLURM_ARRAY_TASK_COUNT=2, SLURM_SUBMIT_DIR=proj),
        )
        for i in range(2)
    ]
    outs = _run_all(tasks, proj)
    assert all("--shard" in out and "--replace" not in out.split("job")[1] for out in outs)
    shards = sorted((proj / "data" / "single" / ".shards").glob("shard_*.npz"))
    assert len(shards) == 2 and not (proj / "data" / "single" / "manifest.json").exists()
    with np.load(shards[1]) as z:  # mark one shard: the merge must use it, not render it again
        arrays = {k: z[k] for k in z.files}
    arrays["image"] = np.full_like(arrays["image"], 7)
    np.savez(shards[1], **arrays)
    _dvc("repro", "--single-item", "render@single", cwd=proj)
    ds = load_dataset(proj / "data" / "single")
    assert len(ds.images) == 40 and (ds.images[32:] == 7).all() and not (ds.images[:32] == 7).all()
    assert "render@single" not in _dvc("status", "render@single", cwd=proj)


def test_k8s_indexed_job_then_dvc_repro_merges_finetune_cells(tmp_path):
    proj = _project(tmp_path)
    _dvc("repro", "tune_single@single-resnet9-rotation-classification", cwd=proj)  # upstream: render, pretrain
    job = yaml.safe_load((REPO / "deploy" / "k8s-indexed-job.yaml").read_text())
    assert job["kind"] == "Job" and job["spec"]["completionMode"] == "Indexed"
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["SHARDS"]) == job["spec"]["completions"] == job["spec"]["parallelism"]
    env.update(STAGE=FT_STAGE, SHARDS="2")
    env.pop("MLFLOW_TRACKING_URI")  # the test's own store instead of a cluster's server
    pods = [(container["command"] + container["args"], _env(**env, JOB_COMPLETION_INDEX=i)) for i in range(2)]
    _run_all(pods, proj)
    out = proj / "results" / "finetune" / "single" / "resnet9" / "rotation-classification"
    cells = sorted((out / "cells").glob("*.json"))
    assert len(cells) == 4  # 2 budgets × 2 seeds, split over the two pods
    doc = json.loads(cells[0].read_text())
    doc["test"]["accuracy"] = 0.123456  # mark one cell: the merge must not train it again
    cells[0].write_text(json.dumps(doc))
    _dvc("repro", "--single-item", FT_STAGE, cwd=proj)
    results = pd.read_csv(out / "results.csv")
    assert len(results[results.metric == "accuracy"]) == 4 and 0.123456 in results.value.tolist()
