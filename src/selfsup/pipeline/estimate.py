"""What ``dvc repro`` will cost on this machine: the plan's stages that ``dvc status`` reports as changed
(``pending``), timed from a short measurement (``measure``).

Costs are linear in images: seconds per image measured on a few batches (at the configured batch size;
smaller on a CPU, see ``_measured_batch``) times the images each stage pushes through the network or
renders (:func:`selfsup.pipeline.plan.jobs`). It is an estimate: evaluation passes are counted as
forward passes, Optuna's pruning and DVC's skipping of finished cells are not counted.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from selfsup.core.errors import UserError
from selfsup.data.render.quality import Quality
from selfsup.pipeline.plan import Job


@dataclass
class Estimate:
    jobs: list[Job]
    seconds_per_image: dict = field(default_factory=dict)  # key → (train s/img, forward s/img)
    device: str = "cpu"

    def seconds(self, job: Job) -> float:
        train, fwd = self.seconds_per_image[job.key]
        return job.train_images * train + job.eval_images * fwd

    def by_kind(self) -> list[dict]:
        rows = {}
        for job in self.jobs:
            row = rows.setdefault(job.kind, {"stage": job.kind, "jobs": 0, "images": 0.0, "hours": 0.0})
            row["jobs"] += 1
            row["images"] += job.train_images + job.eval_images
            row["hours"] += self.seconds(job) / 3600
        return list(rows.values())

    @property
    def hours(self) -> float:
        return sum(self.seconds(j) for j in self.jobs) / 3600

    def to_json(self) -> dict:
        return {
            "device": self.device,
            "hours": self.hours,
            "by_stage": self.by_kind(),
            "seconds_per_image": {"|".join(map(str, k)): v for k, v in self.seconds_per_image.items()},
            "stages": [j.stage for j in self.jobs],
        }


def pending(jobs: list[Job], cwd: str | Path = ".") -> tuple[list[Job], str]:
    """The jobs ``dvc status`` reports as changed (what ``dvc repro`` would run), and a note on how
    that was decided."""
    try:
        r = subprocess.run(
            [sys.executable, "-m", "dvc", "status", "--json"], cwd=cwd, capture_output=True, text=True, timeout=600
        )
        changed = json.loads(r.stdout) if r.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
        changed = None
    if changed is None:
        return jobs, "every stage (dvc status did not answer)"
    todo = [j for j in jobs if j.stage in changed]
    return todo, f"{len(todo)} of {len(jobs)} stages that dvc status reports as changed"


# ---------------------------------------------------------------- measurement


def _time_steps(objective, n_items: int, batch: int, steps: int, device) -> float:
    """Seconds per image of training steps, after one warm-up step."""
    from selfsup.train.loop import TrainConfig, fit

    marks: list[float] = []

    def tick(step: int, total: int) -> None:
        if device.type == "cuda":
            import torch

            torch.cuda.synchronize()
        marks.append(time.perf_counter())

    fit(objective, n_items, TrainConfig(epochs=1, steps_per_epoch=steps + 1, batch_size=batch), progress=tick)
    return (marks[-1] - marks[0]) / (steps * batch)


def _time_forward(model, res: int, batch: int, device, reps: int = 2) -> float:
    import torch

    from selfsup.data.augment import map_batches

    images = torch.randint(0, 256, (batch * reps, res, res, 3), dtype=torch.uint8).numpy()
    model.eval()
    map_batches(model, images[:batch], device, batch)  # warm-up
    t0 = time.perf_counter()
    map_batches(model, images, device, batch)
    return (time.perf_counter() - t0) / len(images)


def _measured_batch(batch: int, backbone: str, width: float, res: int, device) -> int:
    """The batch timed: the configured one on a GPU; on a CPU at most 64 images of 64² for a narrow
    network, fewer for larger images and a wide ResNet50 (a full-width ResNet50 at 128² with four
    rotations of 64 images needs > 24 GB of activations)."""
    if device.type == "cuda":
        return batch
    heavy = 4 if backbone.startswith("resnet50") and width >= 0.5 else 1
    return max(2, min(batch, int(64 * (64 / res) ** 2 / heavy)))


def _measure_training(key: tuple, device, steps: int) -> tuple[float, float]:
    import torch

    from selfsup.evaluate.finetune import SupervisedModel, SupervisedObjective
    from selfsup.evaluate.tasks import get_task
    from selfsup.models import create_backbone
    from selfsup.pretrain.methods import create_method
    from selfsup.pretrain.run import PretrainObjective

    torch.manual_seed(0)
    if key[0] == "pretrain":
        _, method, backbone, width, res, batch = key
        batch = _measured_batch(batch, backbone, width, res, device)
        net = (
            create_method(method, create_backbone(backbone, width=width))
            .to(device)
            .to(memory_format=torch.channels_last)
        )
        images = torch.randint(0, 256, (batch * 2, res, res, 3), dtype=torch.uint8, device=device)
        return _time_steps(PretrainObjective(net, images), len(images), batch, steps, device), 0.0
    _, backbone, width, res, dense, batch = key
    batch = _measured_batch(batch, backbone, width, res, device)
    task = get_task("segmentation" if dense else "classification")
    bb = create_backbone(backbone, width=width)
    model = SupervisedModel(bb, task.head(bb.out_dim), dense).to(device).to(memory_format=torch.channels_last)
    images = torch.randint(0, 256, (batch * 2, res, res, 3), dtype=torch.uint8, device=device)
    shape = (len(images), res // 8, res // 8) if dense else (len(images),)
    targets = torch.zeros(shape, dtype=torch.long, device=device)
    train = _time_steps(
        SupervisedObjective(model, task, images, targets, pad=res // 8), len(images), batch, steps, device
    )
    return train, _time_forward(model, res, batch, device)


def _measure_render(set_name: str, resolution: int, samples: int, denoise: str, n: int = 3) -> float:
    """Seconds per image of a Blender worker (every core as Cycles threads), after one warm-up image."""
    from selfsup.data.render import measure_render_worker

    ctx = mp.get_context("spawn")  # bpy lives only in the worker
    try:
        with ProcessPoolExecutor(1, mp_context=ctx) as pool:
            return pool.submit(measure_render_worker, set_name, resolution, Quality(samples, denoise), n).result()
    except BrokenProcessPool:
        raise UserError(
            "the render measurement's Blender worker died (is bpy installed with its system "
            "libraries? run scripts/setup.sh)"
        ) from None


def measure(jobs: list[Job], progress: Callable[[str], None] = lambda msg: None, steps: int = 2) -> Estimate:
    """Seconds per image for every distinct cost key of ``jobs`` on this machine's device."""
    from selfsup.train.loop import default_device

    device = default_device()
    est = Estimate(jobs, device=str(device))
    for key in dict.fromkeys(j.key for j in jobs):
        progress(" ".join(map(str, key)))
        if key[0] == "none":
            est.seconds_per_image[key] = (0.0, 0.0)
        elif key[0] == "render":
            est.seconds_per_image[key] = (_measure_render(*key[1:]), 0.0)
        else:
            import torch

            try:
                est.seconds_per_image[key] = _measure_training(key, device, steps)
            except torch.OutOfMemoryError:
                raise UserError(
                    f"{' '.join(map(str, key))}: one training step does not fit in {device} memory; "
                    "lower that stage's batch_size"
                ) from None
    return est
