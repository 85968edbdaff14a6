"""The one prepared check for a lent GPU (issue 28): what runs, how fast, and what waits for the host.

    PYTHONPATH=src python bench/gpu_check.py [--out $OUT/gpu_check.json]      # on the GPU: ≤ 8 minutes
    PYTHONPATH=src python bench/gpu_check.py --tiny --device cpu              # the dry run (a test, < 1 min)

Written for the device machine (Python 3.12, torch 2.11, numpy 2, no bpy / mlflow / optuna): the data is
a synthetic set written with the dataset API (no render), tracking is off (``SELFSUP_TRACKING=off``).
Every step runs under its own time cap and its own ``try``: a failure or a timeout is recorded and the
next step runs. The JSON is rewritten after every figure, so a kill loses only the step it hit.

Steps (figures in ``steps.NAME``):
0 peak       bf16 matmul TFLOP/s and device copy GB/s: every % below is of these.
1 autocast   a 16-cell stacked ResNet9 forward / backward under bf16 autocast; host waits per step
             (``torch.cuda.set_sync_debug_mode("warn")``, the difference of a 6- and a 3-step epoch) for
             SimCLR, Rotation, CMC and a stacked finetune, with the code lines that waited.
2 tests      the GPU-relevant tests (models, losses, train, stacked, DDP, protocols, probe): passed / failed.
3 throughput images/s, ms/step, % of bf16 peak and peak memory for {ResNet9 w0.25 B128, ResNet9 w1 B512,
             ResNet50 w1 B256} × {SimCLR, Rotation, finetune}, and ResNet9 w1 SimCLR with ``compile``.
4 sweep      16 finetuning cells at stack 1, 4 and 16: wall time, speed-up, largest accuracy difference.
5 study      pretrain → stacked finetune → probe through the CLI on a 4k-image set, the pretraining
             killed with SIGKILL after its first checkpoint and resumed (``--deterministic``): wall seconds
             per stage and the largest weight difference from an uninterrupted run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pythonpath() -> str:
    """src first, then whatever PYTHONPATH already held (subprocesses see what this process sees)."""
    return os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p)


# (full, tiny) sizes; the tiny ones run on 2 CPU cores in well under a minute
SIZES = {
    "peak_n": (8192, 256),
    "copy_mb": (1024, 16),
    "cells": (16, 4),
    "throughput": (
        [("resnet9", 0.25, 128), ("resnet9", 1.0, 512), ("resnet50", 1.0, 256)],
        [("resnet9", 0.125, 8)],
    ),
    "throughput_steps": (10, 2),
    "resolution": (64, 32),
    "sweep_steps": (60, 4),
    "study_images": (4000, 400),
    "study_epochs": (3, 2),
}
CAPS = {"peak": 30, "autocast": 70, "tests": 100, "throughput": 130, "sweep": 70, "study": 110}  # seconds, ≤ 8 min
TESTS = [
    "tests/models",
    "tests/pretrain/test_losses.py",
    "tests/train/test_train.py",
    "tests/train/test_stacked.py",
    "tests/train/test_ddp.py",
    "tests/evaluate/test_protocols.py",
    "tests/evaluate/test_probe.py",
]
TINY_TESTS = ["tests/pretrain/test_losses.py"]


class StepTimeout(Exception):
    pass


class Report:
    """The JSON file, rewritten (atomically) after every figure."""

    def __init__(self, path: Path, meta: dict):
        self.path, self.data = path, {"meta": meta, "steps": {}}
        path.parent.mkdir(parents=True, exist_ok=True)
        self.flush()

    def put(self, step: str, key: str, value) -> None:
        self.data["steps"].setdefault(step, {})[key] = value
        self.flush()

    def flush(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.path)


@contextlib.contextmanager
def time_cap(seconds: int):
    def expire(signum, frame):
        raise StepTimeout(f"over its cap of {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def size(name: str, tiny: bool):
    return SIZES[name][1 if tiny else 0]


# ---------------------------------------------------------------- the synthetic dataset (dataset API)


def synthetic_dataset(out: Path, n: int, resolution: int, seed: int = 0) -> Path:
    """``n`` images of the ten classes, each a class-coloured square at a class-dependent place on noise,
    split 70/15/15 by 'model' (groups of five images), written with :func:`write_dataset`."""
    import numpy as np

    from selfsup.data.dataset import write_dataset
    from selfsup.data.shapes import CLASSES

    if (out / "manifest.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    classes = np.arange(n) % len(CLASSES)
    images = rng.integers(0, 96, size=(n, resolution, resolution, 3), dtype=np.uint8)
    s = resolution // 3
    for i, c in enumerate(classes):
        y, x = (c // 4) * (resolution - s) // 2, (c % 4) * (resolution - s) // 3
        y, x = y + rng.integers(0, 3), x + rng.integers(0, 3)
        images[i, y : y + s, x : x + s] = (np.array([(c * 73) % 256, (c * 151) % 256, (c * 29) % 256]) + 64) % 256
    models = np.arange(n) // 5
    split = np.array(["train", "val", "test"])[np.digitize(rng.random(models.max() + 1), [0.7, 0.85])][models]
    rows = [
        {
            "index": i,
            "split": split[i],
            "class_id": int(c),
            "class_name": CLASSES[c],
            "model_id": int(models[i]),
            "pose_bin": int(rng.integers(0, 5)),
        }
        for i, c in enumerate(classes)
    ]
    params = {"count": n, "renderer": "synthetic", "resolution": resolution, "samples": 0, "seed": seed}
    write_dataset(out, [{"image": images}], rows, {**params, "set": "single", "variant": "TC--"})
    return out


# ---------------------------------------------------------------- steps


def step_peak(r: Report, dev, tiny: bool) -> None:
    import torch

    n = size("peak_n", tiny)
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    best = 0.0
    for _ in range(5):
        sync(dev)
        t = time.perf_counter()
        for _ in range(10):
            a @ b
        sync(dev)
        best = max(best, 10 * 2 * n**3 / (time.perf_counter() - t) / 1e12)
    r.put("peak", "bf16_tflops", round(best, 2))
    x = torch.empty(size("copy_mb", tiny) * 2**20, dtype=torch.uint8, device=dev)
    y = torch.empty_like(x)
    gbs = 0.0
    for _ in range(5):
        sync(dev)
        t = time.perf_counter()
        y.copy_(x)
        sync(dev)
        gbs = max(gbs, 2 * x.numel() / (time.perf_counter() - t) / 1e9)  # read + write
    r.put("peak", "copy_gb_per_s", round(gbs, 1))


def sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _images(n: int, resolution: int, dev):
    import torch

    return torch.randint(0, 256, (n, resolution, resolution, 3), dtype=torch.uint8, device=dev)


def _pretrain_objective(method: str, backbone: str, width: float, images, dev):
    from selfsup.models import create_backbone
    from selfsup.pretrain.methods import create_method, default_backbone
    from selfsup.pretrain.run import PretrainObjective

    net = create_method(method, create_backbone(default_backbone(method, backbone), width=width)).to(dev)
    return PretrainObjective(net, images)


def _finetune_objective(backbone: str, width: float, images, dev):
    import torch

    from selfsup.evaluate.finetune import SupervisedModel, SupervisedObjective
    from selfsup.evaluate.tasks import get_task
    from selfsup.models import create_backbone

    task = get_task("classification")
    net = create_backbone(backbone, width=width)
    model = SupervisedModel(net, task.head(net.out_dim)).to(dev)
    targets = torch.randint(0, 10, (len(images),), device=dev)
    return SupervisedObjective(model, task, images, targets, pad=4)


def _host_waits(make, n_items: int, batch: int, dev) -> dict:
    """Synchronising calls per training step: those of a 6-step minus a 3-step epoch (what happens once
    per epoch cancels), and the code lines they came from."""
    import torch

    from selfsup.train.loop import TrainConfig, fit

    if dev.type != "cuda":
        fit(make(), n_items, TrainConfig(epochs=1, steps_per_epoch=2, batch_size=batch))  # the path runs
        return {"per_step": None, "note": "sync debug mode needs CUDA"}
    counts, where = [], {}
    for steps in (3, 6):
        objective = make()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                fit(objective, n_items, TrainConfig(epochs=1, steps_per_epoch=steps, batch_size=batch))
            finally:
                torch.cuda.set_sync_debug_mode(0)
        mine = [w for w in seen if "synchroniz" in str(w.message)]
        counts.append(len(mine))
        for w in mine:
            key = f"{Path(w.filename).name}:{w.lineno}"
            where[key] = where.get(key, 0) + 1
    return {"per_step": (counts[1] - counts[0]) / 3, "epoch_3": counts[0], "epoch_6": counts[1], "lines": where}


def step_autocast(r: Report, dev, tiny: bool, data: Path) -> None:
    import torch

    from selfsup.evaluate.finetune import FinetuneConfig, SupervisedModel, train_models
    from selfsup.evaluate.sweep import Cell, prepare
    from selfsup.evaluate.tasks import get_task
    from selfsup.models import create_backbone
    from selfsup.train.stacked import StackedModels

    cells, res = size("cells", tiny), size("resolution", tiny)
    task = get_task("classification")
    models = []
    for _ in range(cells):
        net = create_backbone("resnet9", width=0.25)
        models.append(SupervisedModel(net, task.head(net.out_dim)))
    stacked = StackedModels(models).to(dev).train()
    x = torch.randn(cells, 32, 3, res, res, device=dev)
    y = torch.randint(0, 10, (cells, 32), device=dev)
    kind = "cuda" if dev.type == "cuda" else "cpu"
    with torch.autocast(kind, dtype=torch.bfloat16):
        out = stacked(x)
        loss = sum(task.loss(o, t) for o, t in zip(out, y))
    loss.backward()
    grads_ok = all(torch.isfinite(p.grad).all() for p in stacked.stacked_params if p.grad is not None)
    r.put("autocast", "stacked_forward_backward", {"ok": bool(grads_ok), "out_dtype": str(out.dtype), "cells": cells})

    images = _images(256, res, dev)
    for method in ("simclr", "rotation", "cmc"):
        r.put(
            "autocast",
            f"host_waits_{method}",
            _host_waits(lambda m=method: _pretrain_objective(m, "resnet9", 0.25, images, dev), 256, 32, dev),
        )
    sweep = prepare("classification", data, None, [40, 80], list(range(cells // 2)), "resnet9", 0.25, "rgb")
    grid = [Cell(b, s) for b in (40, 80) for s in range(cells // 2)]
    if dev.type == "cuda":
        counts = []
        for steps in (3, 6):
            cfg = FinetuneConfig(steps=steps, epochs=1, batch_size=32)
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    train_models(sweep, grid, 0, "train", cfg, None)
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            counts.append(sum("synchroniz" in str(w.message) for w in seen))
        waits = {"per_step": (counts[1] - counts[0]) / 3, "epoch_3": counts[0], "epoch_6": counts[1]}
    else:
        train_models(sweep, grid, 0, "train", FinetuneConfig(steps=2, epochs=1, batch_size=8), None)
        waits = {"per_step": None, "note": "sync debug mode needs CUDA"}
    r.put("autocast", "host_waits_stacked_finetune", waits)


def step_tests(r: Report, dev, tiny: bool) -> None:
    import xml.etree.ElementTree as ET

    junit = Path(tempfile.mkdtemp()) / "junit.xml"
    env = {**os.environ, "SELFSUP_TRACKING": "off", "SELFSUP_NO_BPY": "1", "PYTHONPATH": _pythonpath()}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    cmd += ["--junitxml", str(junit), *(TINY_TESTS if tiny else TESTS)]
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=CAPS["tests"] - 5)
    cases = ET.parse(junit).getroot().iter("testcase") if junit.exists() else []
    passed, failed, skipped = [], {}, []
    for case in cases:
        name = f"{case.get('classname')}::{case.get('name')}"
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is not None:
            failed[name] = (bad.get("message") or "")[:300]
        elif case.find("skipped") is not None:
            skipped.append(name)
        else:
            passed.append(name)
    r.put(
        "tests", "summary", {"rc": p.returncode, "passed": len(passed), "failed": len(failed), "skipped": len(skipped)}
    )
    r.put("tests", "failed", failed)
    r.put("tests", "wall_s", round(time.perf_counter() - t, 1))
    if not cases:
        r.put("tests", "output_tail", (p.stdout + p.stderr)[-2000:])


def step_throughput(r: Report, dev, tiny: bool) -> None:
    import torch

    from selfsup.train.loop import TrainConfig, fit

    peak = r.data["steps"].get("peak", {}).get("bf16_tflops")
    steps, res = size("throughput_steps", tiny), size("resolution", tiny)
    configs = [(*c, m, False) for c in size("throughput", tiny) for m in ("simclr", "rotation", "finetune")]
    configs.append(("resnet9", 1.0 if not tiny else 0.125, 512 if not tiny else 8, "simclr", True))
    for backbone, width, batch, what, compiled in configs:
        key = f"{backbone}_w{width}_b{batch}_{what}" + ("_compile" if compiled else "")
        try:
            images = _images(max(batch * 2, 256), res, dev)
            if what == "finetune":
                objective = _finetune_objective(backbone, width, images, dev)
            else:
                objective = _pretrain_objective(what, backbone, width, images, dev)
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            cfg = TrainConfig(epochs=2, steps_per_epoch=steps, batch_size=batch, compile=compiled)
            history = fit(objective, len(images), cfg)  # epoch 0 warms up (cuDNN autotuning, compilation)
            last = history[-1]
            tflops = last["train_gflop"] / last["epoch_time_s"] / 1e3
            r.put(
                "throughput",
                key,
                {
                    "images_per_s": round(last["images_per_s"], 1),
                    "ms_per_step": round(1e3 * last["epoch_time_s"] / steps, 2),
                    "tflops": round(tflops, 3),
                    "pct_of_bf16_peak": round(100 * tflops / peak, 2) if peak else None,
                    "peak_mem_gb": round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
                    if dev.type == "cuda"
                    else None,
                    "first_epoch_s": round(history[0]["epoch_time_s"], 2),
                },
            )
        except StepTimeout:
            raise
        except Exception as e:  # one configuration (out of memory, a compile failure) does not end the step
            r.put("throughput", key, {"error": f"{type(e).__name__}: {str(e)[:300]}"})
        finally:
            objective = images = None
            if dev.type == "cuda":
                torch.cuda.empty_cache()


def step_sweep(r: Report, dev, tiny: bool, data: Path) -> None:
    from selfsup.evaluate.finetune import FinetuneConfig, train_models
    from selfsup.evaluate.sweep import Cell, evaluate, prepare

    cells = size("cells", tiny)
    seeds = list(range(cells // 2))
    sweep = prepare("classification", data, None, [40, 80], seeds, "resnet9", 0.25, "rgb")
    grid = [Cell(b, s) for b in (40, 80) for s in seeds]
    cfg = FinetuneConfig(steps=size("sweep_steps", tiny), epochs=1, batch_size=32 if not tiny else 8)
    test_x, test_y = sweep.ds.images[sweep.test_idx], sweep.targets[sweep.test_idx]
    walls, accs = {}, {}
    for stack in sorted({1, max(1, cells // 4), cells}):
        t = time.perf_counter()
        models = []
        for i in range(0, len(grid), stack):
            models += train_models(sweep, grid[i : i + stack], 0, "train", cfg, None)[0]
        walls[stack] = time.perf_counter() - t
        accs[stack] = [evaluate(m, sweep.task, test_x, test_y, sweep.device)["accuracy"] for m in models]
        r.put(
            "sweep", f"stack_{stack}", {"wall_s": round(walls[stack], 2), "speedup": round(walls[1] / walls[stack], 2)}
        )
    diff = max(abs(a - b) for s in accs for a, b in zip(accs[s], accs[1]))
    r.put("sweep", "largest_accuracy_difference", round(diff, 4))
    r.put("sweep", "test_images", int(len(test_y)))


def _selfsup(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "selfsup", *args]


def _timed(walls: dict, stage: str, args: list[str], env: dict) -> None:
    """``selfsup ARGS`` to the end, its wall seconds in ``walls[stage]``; a failure raises with its stderr."""
    t = time.perf_counter()
    p = subprocess.run(_selfsup(args), env=env, cwd=REPO, capture_output=True, text=True)
    walls[stage] = time.perf_counter() - t
    if p.returncode:
        raise RuntimeError(f"{stage} failed: {p.stderr[-500:]}")


def step_study(r: Report, dev, tiny: bool, work: Path) -> None:
    from safetensors.torch import load_file

    data = synthetic_dataset(work / "study_data", size("study_images", tiny), size("resolution", tiny), seed=1)
    env = {**os.environ, "SELFSUP_TRACKING": "off", "PYTHONPATH": _pythonpath()}
    width, batch = ("0.25", "128") if not tiny else ("0.125", "32")
    common = ["pretrain", "--method", "simclr", "--data", str(data), "--width", width, "--batch-size", batch]
    common += ["--epochs", str(size("study_epochs", tiny)), "--deterministic"]
    walls: dict[str, float] = {}
    _timed(walls, "pretrain", [*common, "--out", str(work / "straight")], env)
    killed = work / "killed"
    proc = subprocess.Popen(
        _selfsup([*common, "--out", str(killed)]),
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    while not (killed / "checkpoint.pt").exists() and proc.poll() is None:
        time.sleep(0.05)
    r.put("study", "killed_mid_run", proc.poll() is None)  # (a tiny run may finish first)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _timed(walls, "resume", [*common, "--out", str(killed)], env)
    a, b = load_file(work / "straight" / "backbone.safetensors"), load_file(killed / "backbone.safetensors")
    diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    r.put("study", "resume_largest_weight_difference", diff)
    budgets, seeds = ("40,160", "0,1,2,3,4,5,6,7") if not tiny else ("10,20", "0,1")
    for stage, args in (
        ("finetune", ["finetune", "--task", "classification", "--steps", "200" if not tiny else "4", "--epochs", "1"]),
        ("probe", ["probe", "--task", "classification", "--protocol", "linear"]),
    ):
        where = ["--data", str(data), "--init", str(work / "straight"), "--out", str(work / stage)]
        _timed(walls, stage, [*args, *where, "--budgets", budgets, "--seeds", seeds], env)
        r.put("study", f"{stage}_rows", sum(1 for _ in open(work / stage / "results.csv")) - 1)
    r.put("study", "wall_s", {k: round(v, 1) for k, v in walls.items()})


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="small sizes (the CPU dry run)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--out", type=Path, default=None, help="default: $OUT/gpu_check.json, else bench/gpu_check.json")
    ap.add_argument("--only", default="", help="comma-separated step names (default: all)")
    args = ap.parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch initialises CUDA
    os.environ["SELFSUP_TRACKING"] = "off"
    sys.path.insert(0, str(REPO / "src"))
    import torch

    dev = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    if args.device == "cuda" and dev.type != "cuda":
        print("gpu_check: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    out = args.out or (
        Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else REPO / "bench" / "gpu_check.json"
    )
    meta = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "tiny": args.tiny,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if args.tiny:  # the dry run traces the compiled step (graph breaks included) without inductor's codegen
        from selfsup.train import loop

        loop.COMPILE_BACKEND = meta["compile_backend"] = "eager"
    report = Report(out, meta)
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    data_ready = {}

    def data() -> Path:
        if "d" not in data_ready:
            data_ready["d"] = synthetic_dataset(
                work / "data", 2000 if not args.tiny else 300, size("resolution", args.tiny)
            )
        return data_ready["d"]

    steps = {
        "peak": lambda: step_peak(report, dev, args.tiny),
        "autocast": lambda: step_autocast(report, dev, args.tiny, data()),
        "tests": lambda: step_tests(report, dev, args.tiny),
        "throughput": lambda: step_throughput(report, dev, args.tiny),
        "sweep": lambda: step_sweep(report, dev, args.tiny, data()),
        "study": lambda: step_study(report, dev, args.tiny, work),
    }
    chosen = [s for s in args.only.split(",") if s] or list(steps)
    for name in chosen:
        t = time.perf_counter()
        status = "ok"
        try:
            with time_cap(CAPS[name]):
                steps[name]()
        except StepTimeout as e:
            status = f"timeout: {e}"
        except Exception as e:
            status = f"error: {type(e).__name__}: {str(e)[:500]}"
            report.put(name, "traceback", traceback.format_exc()[-3000:])
        report.put(name, "status", status)
        report.put(name, "seconds", round(time.perf_counter() - t, 1))
        print(f"gpu_check {name}: {status} ({time.perf_counter() - t:.0f} s)", flush=True)
    report.data["meta"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    report.flush()
    print(f"gpu_check: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
