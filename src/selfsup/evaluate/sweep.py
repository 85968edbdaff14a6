"""The sweep engine shared by finetuning, probing and tuning: one task on one dataset from one
initialisation, over (label budget, seed) cells.

:func:`prepare` checks every input before anything is trained or written and returns a
:class:`Sweep` (dataset, targets, splits, the pretrained backbone). A :class:`SweepSpec` says what
one sweep runs and how its results are labelled: the cells, the cache key of a finished cell, the
MLflow parameters and the extra ``results.csv`` columns. :func:`run_cells` trains (or takes from
``OUT/cells/``) every cell inside one MLflow run and writes ``OUT/results.csv``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn

from selfsup.core import checks, tracking
from selfsup.core.defaults import PREDICTIONS, as_csv
from selfsup.core.errors import UserError
from selfsup.core.progress import step_bar
from selfsup.core.provenance import atomic_write_json, atomic_write_text, code_hash, sha256_file
from selfsup.data.augment import map_batches
from selfsup.data.budgets import label_subset
from selfsup.data.colour import COLOURS
from selfsup.data.dataset import Dataset, load_dataset
from selfsup.data.shards import label as shard_label
from selfsup.data.shards import mine as shards_of
from selfsup.evaluate.tasks import Task, get_task, task_for
from selfsup.models import BACKBONES
from selfsup.pretrain.checkpoint import BACKBONE_FILE, SCRATCH, load_pretrained, resolve_init
from selfsup.train.loop import cost_totals, default_device


def eval_batch(task: Task) -> int:
    return 128 if task.dense else 512


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, device, batch: int = 512) -> torch.Tensor:
    """Outputs of ``model`` (eval mode, no augmentation) for all ``images``, on the CPU."""
    model.eval()
    return map_batches(model, images, device, batch)


def evaluate(model: nn.Module, task: Task, images: np.ndarray, targets: np.ndarray, device) -> dict:
    """The task's metrics of ``model`` on all ``images``."""
    return task.metrics(predict(model, images, device, eval_batch(task)), torch.from_numpy(np.asarray(targets)))


GALLERY_IMAGES = 4  # test images whose dense predictions the report shows


def prediction_record(model: nn.Module, sweep: Sweep, protocol: str) -> dict[str, np.ndarray]:
    """What a trained cell predicts on the test split, for people to look at: the confusion matrix
    (rows: true, columns: predicted) of a classification-type task; for dense tasks also the first
    ``GALLERY_IMAGES`` test images with their target and predicted maps (class ids, or depth)."""
    t, idx = sweep.task, sweep.test_idx
    out = predict(model, sweep.ds.images[idx], sweep.device, eval_batch(t))
    truth = torch.from_numpy(np.asarray(sweep.targets[idx]))
    record = {
        "task": np.array(t.name),
        "method": np.array(sweep.method),
        "protocol": np.array(protocol),
        "finetune_variant": np.array(sweep.ds.variant),
        "pretrain_variant": np.array(sweep.meta.get("variant", "")),
    }
    if t.kind == "classify":
        pred, true = out.argmax(1), truth.long()
        flat = (true * t.outputs + pred).reshape(-1)
        record["confusion"] = torch.bincount(flat, minlength=t.outputs**2).reshape(t.outputs, t.outputs).numpy()
    if t.dense:
        g = slice(0, GALLERY_IMAGES)
        maps = out[g].argmax(1) if t.kind == "classify" else out[g, 0]
        record.update(
            images=np.asarray(sweep.ds.images[idx[g]]),
            truth=t.fit_target(truth[g]).numpy(),
            pred=maps.numpy(),
        )
    return record


def save_predictions(out: Path, cell: Cell, record: dict[str, np.ndarray]) -> None:
    folder = out / PREDICTIONS
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"n{cell.budget}-s{cell.seed}.tmp.npz"
    np.savez_compressed(tmp, **record, label_budget=np.array(cell.budget), seed=np.array(cell.seed))
    tmp.replace(folder / f"n{cell.budget}-s{cell.seed}.npz")


@dataclass
class Sweep:
    """What every sweep over (budget, seed) cells shares: checked inputs, subsets, provenance."""

    task: Task
    ds: Dataset
    targets: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    pretrained: nn.Module | None
    meta: dict
    method: str
    backbone: str
    width: float
    colour: str
    device: torch.device
    init_weights: str = ""  # sha256 of the pretrained backbone file: finished cells are valid for these weights only
    chance: dict = field(default_factory=dict)  # metric → what a constant predictor scores on the test split

    def subset(self, budget: int, seed: int) -> np.ndarray:
        return label_subset(self.train_idx, self.task.strata(self.targets[self.train_idx]), budget, seed)

    def columns(self) -> dict:
        return {
            "backbone": self.backbone,
            "width": self.width,
            "colour": self.colour,
            "dataset_hash": self.ds.dataset_hash,
            "pretrain_dataset_hash": self.meta.get("dataset_hash", ""),
            "pretrain_variant": self.meta.get("variant", ""),
            "finetune_variant": self.ds.variant,
        }

    def spec(
        self,
        stage: str,
        protocol: str,
        budgets,
        seeds,
        *,
        init,
        data,
        key: Mapping,
        code: str,
        frozen_blocks: int,
        bn: str,
        steps: int,
        steps_per_cell: int,
        shard: tuple[int, int] | None = None,
        stack: int = 1,
        seed_only_picks_subset: bool = False,
    ) -> SweepSpec:
        """The spec of one sweep of this task/init: ``key`` holds the stage's own settings that decide a
        cell's metrics (besides task, method, protocol, the columns and the pretrained weights); ``code``
        names the stage's module, whose import closure's source hash enters the cache key too (edited
        training or metric code retrains finished cells). ``seed_only_picks_subset`` (a deterministic
        probe): a budget that takes the whole train split runs the first seed alone, as every seed
        would give the very same cell."""
        whole = len(self.train_idx)
        return SweepSpec(
            stage=stage,
            protocol=protocol,
            cells=tuple(
                Cell(b, s) for b in budgets for s in (seeds[:1] if seed_only_picks_subset and b >= whole else seeds)
            ),
            cache_key={
                "task": self.task.name,
                "method": self.method,
                "protocol": protocol,
                **key,
                **self.columns(),
                "init_weights": self.init_weights,
                "code": code_hash(code),
            },
            run_params={
                "budgets": as_csv(budgets),
                "seeds": as_csv(seeds),
                "init": str(init or ""),
                "data": str(data),
                "device": str(self.device),
                "stage": stage,
            },
            row_columns={**self.columns(), "frozen_blocks": frozen_blocks, "bn": bn, "steps": steps},
            steps_per_cell=steps_per_cell,
            shard=shard,
            stack=stack,
        )


class Cell(NamedTuple):
    """One (label budget, seed) cell of a sweep."""

    budget: int
    seed: int

    @property
    def file_name(self) -> str:
        return f"b{self.budget}_s{self.seed}.json"


@dataclass(frozen=True)
class SweepSpec:
    """What one sweep runs and how its results are labelled (built by :meth:`Sweep.spec`)."""

    stage: str  # the MLflow run kind: finetune or probe
    protocol: str  # finetune, frozen-k, linear, knn-cosine, ...
    cells: tuple[Cell, ...]
    cache_key: Mapping[str, object]  # everything that decides a cell's metrics: a finished cell is reused only if equal
    run_params: Mapping[str, object]  # the sweep's MLflow parameters besides the cache key
    row_columns: Mapping[str, object]  # results.csv columns besides RESULT_COLUMNS
    steps_per_cell: int = 1  # progress units of one cell
    stack: int = 1  # cells trained together (stacked models); an execution detail, not in the cache key
    shard: tuple[int, int] | None = field(default=None)  # (i, n): this job trains cells i, i+n, ... only

    @property
    def cache_hash(self) -> str:
        return hashlib.sha256(json.dumps(dict(self.cache_key), sort_keys=True).encode()).hexdigest()[:12]


def check_targets(task: Task, targets: np.ndarray, data) -> None:
    """Class ids must lie in 0 … classes − 1 (they index the loss); regression targets must be finite."""
    flat = np.asarray(targets).reshape(-1)
    if task.kind == "classify":
        if not np.issubdtype(flat.dtype, np.integer):
            raise UserError(f"dataset folder {str(data)!r}: {task.name} labels are {flat.dtype}, not class ids")
        bad = (flat < 0) | (flat >= task.outputs)
        if bad.any():
            raise UserError(
                f"dataset folder {str(data)!r}: {task.name} label {int(flat[bad][0])} is out of range "
                f"0…{task.outputs - 1} ({int(bad.sum())} such labels)"
            )
        if len(np.unique(flat)) < 2:
            hint = f": {task.one_class_hint}" if task.one_class_hint else ""
            raise UserError(
                f"dataset folder {str(data)!r}: every {task.name} label is {int(flat[0])}, "
                f"so there is nothing to learn{hint}"
            )
    elif not np.isfinite(flat.astype(np.float64)).all():
        raise UserError(f"dataset folder {str(data)!r}: {task.name} targets hold NaN or infinite values")


def prepare(
    task: str, data, init, budgets, seeds, backbone: str, width: float, colour: str, verify: bool = False
) -> Sweep:
    """Check everything a sweep needs before anything is trained or written."""
    get_task(task)  # an unknown task: an error before the dataset is read
    BACKBONES.get(backbone)
    budgets = checks.int_list(budgets, "label budget")
    seeds = checks.int_list(seeds, "seed")
    checks.numbers(width=width)
    tracking.check_store()
    ds = load_dataset(data, verify=verify)
    t = task_for(task, ds)
    if ds.set_name != t.dataset_set:
        raise UserError(
            f"task {task!r} needs a {t.dataset_set}-object dataset, but {str(data)!r} is a {ds.set_name}-object dataset"
        )
    init = resolve_init(init)
    pretrained, meta = load_pretrained(init) if init else (None, {})
    method = meta.get("method", SCRATCH)
    if meta:  # a pretrained folder (or a scratch folder) says which backbone
        backbone, width, colour = meta["backbone"], meta["width"], meta.get("colour", "rgb")
        meta = meta if pretrained is not None else {}
    if colour not in COLOURS:
        raise UserError(f"unknown colour space {colour!r}: choose from {', '.join(COLOURS)}")
    ds.require_splits("train", "val", "test")  # val is read after training: check it before
    targets = t.targets(ds)
    check_targets(t, targets, data)
    sweep = Sweep(
        t,
        ds,
        targets,
        ds.split_indices("train"),
        ds.split_indices("val"),
        ds.split_indices("test"),
        pretrained,
        meta,
        method,
        backbone,
        width,
        colour,
        default_device(),
        sha256_file(Path(init) / BACKBONE_FILE) if pretrained is not None else "",
    )
    for b in budgets:  # check every budget before any training
        sweep.subset(b, 0)
    # chance: what a learner that knows only the training prior scores (class-balanced budgets: the
    # mean test share of the classes, 1/K on a balanced test split), read off the largest budget
    prior = targets[sweep.subset(max(budgets), 0)] if budgets else None
    sweep.chance = t.chance_metrics(targets[sweep.test_idx], prior)
    return sweep


def run_cells(
    sweep: Sweep,
    spec: SweepSpec,
    out: Path,
    train_cells: Callable[[list[Cell], Callable], list[tuple[dict, list[dict]]]],
    progress: bool,
) -> pd.DataFrame:
    """Run (or take from ``OUT/cells/``) every cell of ``spec`` inside one parent MLflow run; write
    ``OUT/results.csv`` atomically. ``train_cells(cells, progress_cb)`` trains up to ``spec.stack``
    cells together and returns each one's test metrics and per-epoch logs; every cell gets a nested
    MLflow run with both, and its file in ``OUT/cells/`` as soon as it is done.

    With ``spec.shard=(i, n)`` only cells i, i+n, ... are trained (others are taken from ``OUT/cells/``
    when another job has finished them); ``results.csv`` is written once every cell is there. The
    returned frame's ``attrs["missing"]`` counts the cells still missing."""
    (out / "cells").mkdir(parents=True, exist_ok=True)
    settings_hash, cells, shard = spec.cache_hash, spec.cells, spec.shard
    mine = set(shards_of(list(cells), shard))
    method, task, protocol, stage = sweep.method, sweep.task.name, spec.protocol, spec.stage

    def cached(cell: Cell) -> dict | None:
        cell_file = out / "cells" / cell.file_name
        done = json.loads(cell_file.read_text()) if cell_file.exists() else None
        return done["test"] if done and done.get("settings_hash") == settings_hash else None

    def record(cell: Cell, metrics: dict, history: list[dict]) -> None:
        budget, seed = cell
        tags = {"method": method, "task": task, "protocol": protocol, "label_budget": budget, "seed": seed}
        params = {"label_budget": budget, "seed": seed, "n_labelled": len(sweep.subset(budget, seed))}
        name = f"{method}-{task}-{protocol}-n{budget}-s{seed}"
        with tracking.run("cell", params, sweep.ds, tags=tags, nested=True, run_name=name):
            for epoch, logs in enumerate(history):
                tracking.log_metrics(logs, step=epoch)
            tracking.log_metrics({f"test_{m}": v for m, v in metrics.items()})
            tracking.log_metrics(cost_totals(history))
        atomic_write_json(
            out / "cells" / cell.file_name,
            {"settings_hash": settings_hash, "test": metrics, "label_budget": budget, "seed": seed},
        )

    done = {cell: m for cell in cells if (m := cached(cell)) is not None}
    todo = [cell for cell in cells if cell not in done and cell in mine]
    groups = [todo[i : i + spec.stack] for i in range(0, len(todo), spec.stack)]
    run_name = f"{stage}-{method}-{task}-{protocol}" + (f"-shard{shard[0]}of{shard[1]}" if shard else "")
    total = len(cells) * spec.steps_per_cell
    with (
        tracking.run(
            stage,
            {**spec.cache_key, **spec.run_params, "shard": shard_label(shard)},
            sweep.ds,
            tags={"method": method, "task": task, "protocol": protocol},
            run_name=run_name,
        ),
        step_bar(f"{protocol} {method}/{task}", progress) as bar,
    ):
        bar(len(done) * spec.steps_per_cell, total)
        for group in groups:
            before, units = len(done) * spec.steps_per_cell, len(group) * spec.steps_per_cell
            trained = train_cells(group, lambda i, n, b=before, u=units: bar(b + u * i // n, total))
            for cell, (metrics, history) in zip(group, trained):
                record(cell, metrics, history)
                done[cell] = metrics
            bar(len(done) * spec.steps_per_cell, total)
        for cell in cells:  # other jobs' cells may have finished meanwhile
            if cell not in done and (metrics := cached(cell)) is not None:
                done[cell] = metrics
        rows = [
            {
                "method": method,
                "task": task,
                "protocol": protocol,
                "label_budget": cell.budget,
                "seed": cell.seed,
                "metric": name,
                "value": value,
                **spec.row_columns,
                "chance": sweep.chance.get(name, float("nan")),
            }
            for cell in cells
            if cell in done
            for name, value in done[cell].items()
        ]
        results = pd.DataFrame(rows)
        results.attrs["missing"] = len(cells) - len(done)
        if not results.attrs["missing"]:
            atomic_write_text(out / "results.csv", results.to_csv(index=False))
            tracking.log_artifact(out / "results.csv")
    return results
