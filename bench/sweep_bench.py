"""Stacked vs sequential training of one budget × seed sweep, in one run.

    python bench/sweep_bench.py [--data data/single] [--budgets 50,1000] [--seeds 0,1,2,3]
                                [--steps 60] [--out bench/sweep_bench.json]

Trains the same cells (the default study's classification finetuning: ResNet9 at width 0.125,
batch 32) twice: one after another (``stack=1``) and all together as one stacked module
(:mod:`selfsup.train.stacked`). Prints and writes the training images/s of each (every replica's images
count) and each cell's test accuracy both ways. Uses the GPU when there is one (the same code).

Equivalence is checked where rounding cannot hide a bug: in float64, a few steps of the same cells
stacked and alone must give the same weights (largest difference printed). In float32 the grouped
kernels round differently from the plain ones, and training amplifies that over hundreds of steps,
so the accuracies agree only up to a few test images (the JSON gives the largest difference and the
seed-to-seed spread to compare it with). Run it alone on a quiet machine: it measures wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from selfsup.evaluate.finetune import FinetuneConfig, train_models
from selfsup.evaluate.sweep import Cell, evaluate, prepare


def _train(sweep, cells, config, stack: int) -> tuple[float, list]:
    t = time.perf_counter()
    models = []
    for i in range(0, len(cells), stack):
        models += train_models(sweep, cells[i : i + stack], 0, "train", config, None)[0]
    return time.perf_counter() - t, models


def float64_check(sweep, cells, steps: int = 6) -> float:
    """Largest weight difference between cells trained stacked and alone, in float64."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        cfg = FinetuneConfig(steps=steps, epochs=1, batch_size=16)
        together = train_models(sweep, cells, 0, "train", cfg, None)[0]
        alone = [train_models(sweep, [c], 0, "train", cfg, None)[0][0] for c in cells]
        return max(
            float((a.state_dict()[k].double() - b.state_dict()[k].double()).abs().max())
            for a, b in zip(together, alone)
            for k in a.state_dict()
        )
    finally:
        torch.set_default_dtype(old)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/single")
    ap.add_argument("--task", default="classification")
    ap.add_argument("--budgets", default="50,1000")
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--out", default="bench/sweep_bench.json")
    a = ap.parse_args()
    budgets = [int(b) for b in a.budgets.split(",")]
    seeds = [int(s) for s in a.seeds.split(",")]
    cells = [Cell(b, s) for b in budgets for s in seeds]
    sweep = prepare(a.task, a.data, None, budgets, seeds, "resnet9", a.width, "rgb")
    config = FinetuneConfig(steps=a.steps, epochs=1, batch_size=a.batch_size)
    images = len(cells) * a.steps * a.batch_size
    test = sweep.ds.images[sweep.test_idx], sweep.targets[sweep.test_idx]

    runs = {}
    for mode, stack in (("sequential", 1), ("stacked", len(cells))):
        _train(sweep, cells[:2], FinetuneConfig(steps=2, epochs=1, batch_size=a.batch_size), stack)  # warm-up
        wall, models = _train(sweep, cells, config, stack)
        metric = [evaluate(m, sweep.task, *test, sweep.device)[sweep.task.metric] for m in models]
        runs[mode] = {"stack": stack, "wall_s": wall, "images_per_s": images / wall, sweep.task.metric: metric}
        print(f"{mode:10s} stack={stack:2d}  {images / wall:7.0f} images/s  ({wall:.1f} s for {len(cells)} cells)")

    seq, stk = runs["sequential"][sweep.task.metric], runs["stacked"][sweep.task.metric]
    diffs = [abs(x - y) for x, y in zip(seq, stk)]
    spreads = [statistics.stdev(seq[i : i + len(seeds)]) for i in range(0, len(cells), len(seeds))]
    f64 = float64_check(sweep, cells[:3])
    ratio = runs["stacked"]["images_per_s"] / runs["sequential"]["images_per_s"]
    result = {
        "device": str(sweep.device),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "task": a.task,
        "cells": [list(c) for c in cells],
        "steps": a.steps,
        "batch_size": a.batch_size,
        "width": a.width,
        **runs,
        "speedup_stacked_over_sequential": ratio,
        "max_abs_metric_difference": max(diffs),
        "mean_abs_metric_difference": statistics.mean(diffs),
        "seed_sd_per_budget": spreads,
        "float64_max_weight_difference": f64,
        "command": "python bench/sweep_bench.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items()),
    }
    print(f"stacked / sequential: ×{ratio:.2f}")
    print(
        f"{sweep.task.metric}: largest per-cell difference {max(diffs):.4f} (seed-to-seed sd per budget: "
        + ", ".join(f"{s:.4f}" for s in spreads)
        + f"); float64, 6 steps: largest weight difference {f64:.1e}"
    )
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
