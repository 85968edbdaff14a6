"""Work split into independent jobs (``--shard I/N``): render shards and finetune cells, merged afterwards."""

import subprocess

import numpy as np
import pandas as pd
import pytest
from conftest import BIN, TINY, run_cli
from test_render import _assert_same_pixels_up_to_render_noise

from selfsup.core.errors import UserError
from selfsup.data.dataset import load_dataset
from selfsup.data.shards import mine, parse_shard


def test_shards_partition_the_work():
    items = list(range(11))
    parts = [mine(items, (i, 4)) for i in range(4)]
    assert sorted(sum(parts, [])) == items and parts[1] == [1, 5, 9]
    assert mine(items, None) == items and parse_shard("3/4") == (3, 4) and parse_shard("") is None
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(UserError, match="invalid shard"):
            parse_shard(bad)


def _tiny_render_args(out) -> list[str]:
    return [
        "render",
        "--set",
        TINY["set_name"],
        f"--variant={TINY['variant']}",
        "--count",
        str(TINY["count"]),
        "--seed",
        str(TINY["seed"]),
        "--resolution",
        str(TINY["resolution"]),
        "--samples",
        str(TINY["samples"]),
        "--out",
        str(out),
    ]


def _start(args):
    return subprocess.Popen([str(BIN / "selfsup"), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_render_jobs_then_one_assembly_make_the_uninterrupted_dataset(tiny_dataset, tmp_path):
    out = tmp_path / "sharded"
    jobs = [_start(_tiny_render_args(out) + ["--shard", f"{i}/2"]) for i in range(2)]  # like a 2-task Slurm array
    for job in jobs:
        stdout, stderr = job.communicate(timeout=600)
        assert job.returncode == 0, stderr
        assert "rendered 32 images" in stdout
    assert not (out / "manifest.json").exists()  # a shard job never assembles
    assert len(list((out / ".shards").glob("shard_*.npz"))) == 2
    merged = run_cli(*_tiny_render_args(out))
    assert merged.returncode == 0, merged.stderr
    a, b = load_dataset(out), load_dataset(tiny_dataset)
    pd.testing.assert_frame_equal(a.labels, b.labels)
    _assert_same_pixels_up_to_render_noise(a.images, b.images)
    assert not (out / ".shards").exists()


def test_replace_with_a_shard_is_a_one_line_error(tmp_path):
    res = run_cli(*_tiny_render_args(tmp_path / "x"), "--shard", "0/2", "--replace")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "--shard" in res.stderr
    res = run_cli(*_tiny_render_args(tmp_path / "x"), "--shard", "2/2")
    assert res.returncode == 2 and "invalid shard '2/2'" in res.stderr and not (tmp_path / "x").exists()


def test_finetune_cells_as_independent_jobs_merge_into_the_same_results(tiny_dataset, tmp_path):
    common = [
        "finetune",
        "--task",
        "classification",
        "--data",
        str(tiny_dataset),
        "--budgets",
        "5,10",
        "--seeds",
        "0,1",
        "--width",
        "0.125",
        "--steps",
        "6",
        "--epochs",
        "2",
        "--batch-size",
        "8",
    ]
    whole = run_cli(*common, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    first = run_cli(*common, "--out", str(tmp_path / "split"), "--shard", "0/3")
    assert first.returncode == 0, first.stderr
    assert "still missing" in first.stdout and not (tmp_path / "split" / "results.csv").exists()
    assert len(list((tmp_path / "split" / "cells").glob("*.json"))) == 2  # cells 0 and 3 of 4
    jobs = [_start(common + ["--out", str(tmp_path / "split"), "--shard", f"{i}/3"]) for i in (1, 2)]
    for job in jobs:
        _, stderr = job.communicate(timeout=600)
        assert job.returncode == 0, stderr
    split = pd.read_csv(tmp_path / "split" / "results.csv")  # written by whichever job finished last
    ref = pd.read_csv(tmp_path / "whole" / "results.csv")
    key = ["label_budget", "seed", "metric"]
    split, ref = split.sort_values(key).reset_index(drop=True), ref.sort_values(key).reset_index(drop=True)
    assert len(split) == len(ref) == 4
    np.testing.assert_allclose(split.value, ref.value, atol=1e-6)
