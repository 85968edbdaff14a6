"""Finetuning across label budgets and seeds, from scratch or from a pretrained backbone.

Protocols (``protocol``):

- ``finetune``: every weight trains. Batch norm trains too (batch statistics, running statistics
  updated) unless ``bn="frozen"``, which keeps every BN layer at the pretrained statistics.
- ``frozen-k`` (k = 1..3): the first k stages of the backbone keep their pretrained weights; by
  default their BN layers also keep the pretrained statistics (``bn="frozen"``), and ``bn="train"``
  lets those statistics follow the new data (their affine weights stay frozen).
- the probes on frozen features (``linear``, ``knn``) live in :mod:`selfsup.probe`.

Every (budget, seed) cell trains for the same number of steps, whatever the budget (small
subsets are repeated), validates on held-out models each epoch and reports its final metrics on
the test split (never a best epoch chosen on test). Finished cells are kept in ``OUT/cells/``;
a killed sweep rerun with the same settings trains only the missing cells.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import checks, tracking
from .augment import flip_translate, map_batches, to_input
from .budgets import label_subset
from .colour import COLOURS
from .dataset import Dataset, load_dataset
from .errors import UserError
from .models import BACKBONES, create_backbone
from .pretrain import BACKBONE_FILE, SCRATCH, load_pretrained
from .progress import step_bar
from .provenance import atomic_write_json, atomic_write_text, sha256_file
from .schedule import check_schedule
from .shards import label as shard_label
from .shards import mine as shards_of
from .tasks import Task, get_task
from .train import TrainConfig, default_device, fit

PROTOCOLS = ("finetune", "frozen-1", "frozen-2", "frozen-3")
BN_MODES = ("train", "frozen")
RESULT_COLUMNS = ["method", "task", "protocol", "label_budget", "seed", "metric", "value"]


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 300
    epochs: int = 3  # validation points; steps are split evenly between them
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    pad: int = 4
    schedule: str = "cosine"  # learning-rate decay after the warm-up: cosine or linear


def check_config(config: FinetuneConfig) -> None:
    check_schedule(config.schedule)
    checks.numbers(steps=config.steps, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                   weight_decay=config.weight_decay)


def config_key(config: FinetuneConfig) -> dict:
    """The config as it enters the cache key of finished cells; a new field at its default is left
    out, so cells finished before the field existed stay valid."""
    d = asdict(config)
    if d["schedule"] == "cosine":
        del d["schedule"]
    return d


def parse_protocol(protocol: str, allowed=PROTOCOLS) -> int:
    """The number of frozen backbone stages of a training protocol."""
    if protocol not in allowed:
        raise UserError(f"unknown protocol {protocol!r}: choose from {', '.join(allowed)}")
    return int(protocol.split("-")[1]) if protocol.startswith("frozen-") else 0


class SupervisedModel(nn.Module):
    """Backbone + task head; the first ``frozen_blocks`` stages frozen, BN handled as ``bn`` says."""

    def __init__(self, backbone: nn.Module, head: nn.Module, dense: bool = False, frozen_blocks: int = 0,
                 bn: str = "train"):
        super().__init__()
        self.backbone, self.head, self.dense = backbone, head, dense
        self.frozen = [m for group in backbone.groups()[:frozen_blocks] for m in group]
        for m in self.frozen:
            m.requires_grad_(False)
        self.bn_fixed = (self.frozen if frozen_blocks else [backbone]) if bn == "frozen" else []

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.bn_fixed:
            for bn in m.modules():
                if isinstance(bn, nn.modules.batchnorm._BatchNorm):
                    bn.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.feature_map(x) if self.dense else self.backbone(x))


class SupervisedObjective:
    def __init__(self, model: SupervisedModel, task: Task, images: torch.Tensor, targets: torch.Tensor, pad: int):
        self.module, self.task, self.images, self.targets = model, task, images, targets
        self.pad = 0 if task.dense else pad  # dense targets would need the same shift: no translation there

    def loss(self, idx, generator):
        idx = idx.to(self.images.device)
        x = to_input(self.images[idx])
        if self.pad:
            x = flip_translate(x, self.pad, generator)
        return self.task.loss(self.module(x), self.targets[idx]), {}


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

    def subset(self, budget: int, seed: int) -> np.ndarray:
        return label_subset(self.train_idx, self.task.strata(self.targets[self.train_idx]), budget, seed)

    def columns(self) -> dict:
        return {"backbone": self.backbone, "width": self.width, "colour": self.colour,
                "dataset_hash": self.ds.dataset_hash, "pretrain_dataset_hash": self.meta.get("dataset_hash", ""),
                "pretrain_variant": self.meta.get("variant", ""), "finetune_variant": self.ds.variant}


def check_targets(task: Task, targets: np.ndarray, data) -> None:
    """Class ids must lie in 0 … classes − 1 (they index the loss); regression targets must be finite."""
    flat = np.asarray(targets).reshape(-1)
    if task.kind == "classify":
        if not np.issubdtype(flat.dtype, np.integer):
            raise UserError(f"dataset folder {str(data)!r}: {task.name} labels are {flat.dtype}, not class ids")
        bad = (flat < 0) | (flat >= task.outputs)
        if bad.any():
            raise UserError(f"dataset folder {str(data)!r}: {task.name} label {int(flat[bad][0])} is out of range "
                            f"0…{task.outputs - 1} ({int(bad.sum())} such labels)")
    elif not np.isfinite(flat.astype(np.float64)).all():
        raise UserError(f"dataset folder {str(data)!r}: {task.name} targets hold NaN or infinite values")


def prepare(task: str, data, init, budgets, seeds, backbone: str, width: float, colour: str,
            verify: bool = False) -> Sweep:
    """Check everything a sweep needs before anything is trained or written."""
    t = get_task(task)
    BACKBONES.get(backbone)
    budgets = checks.int_list(budgets, "label budget")
    seeds = checks.int_list(seeds, "seed")
    checks.numbers(width=width)
    ds = load_dataset(data, verify=verify)
    if ds.set_name != t.dataset_set:
        raise UserError(f"task {task!r} needs a {t.dataset_set}-object dataset, but {str(data)!r} is a "
                        f"{ds.set_name}-object dataset")
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
    sweep = Sweep(t, ds, targets, ds.split_indices("train"), ds.split_indices("val"), ds.split_indices("test"),
                  pretrained, meta, method, backbone, width, colour, default_device(),
                  sha256_file(Path(init) / BACKBONE_FILE) if pretrained is not None else "")
    for b in budgets:  # check every budget before any training
        sweep.subset(b, 0)
    return sweep


def run_cells(sweep: Sweep, out: Path, protocol: str, budgets, seeds, settings: dict, params: dict,
              steps_per_cell: int, train_cell: Callable[[int, int, Callable], dict], progress: bool,
              extra: dict, shard: tuple[int, int] | None = None) -> pd.DataFrame:
    """Run (or take from ``OUT/cells/``) every (budget, seed) cell inside one parent MLflow run;
    write ``OUT/results.csv`` atomically.

    With ``shard=(i, n)`` only cells i, i+n, ... are trained (others are taken from ``OUT/cells/`` when
    another job has finished them); ``results.csv`` is written once every cell is there. The returned
    frame's ``attrs["missing"]`` counts the cells still missing."""
    (out / "cells").mkdir(parents=True, exist_ok=True)
    settings = {**settings, "init_weights": sweep.init_weights}  # re-pretrained weights retrain every cell
    settings_hash = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    cells = [(b, s) for b in budgets for s in seeds]
    mine = set(shards_of(cells, shard))
    method, task = sweep.method, sweep.task.name
    stage = params.get("stage", "finetune")

    def cached(budget: int, seed: int) -> dict | None:
        cell_file = out / "cells" / f"b{budget}_s{seed}.json"
        done = json.loads(cell_file.read_text()) if cell_file.exists() else None
        return done["test"] if done and done.get("settings_hash") == settings_hash else None

    done: dict[tuple[int, int], dict] = {}
    with tracking.run(stage, {**settings, **params, "shard": shard_label(shard)}, sweep.ds.dataset_hash,
                      tags={"method": method, "task": task, "protocol": protocol},
                      run_name=f"{stage}-{method}-{task}-{protocol}" + (f"-shard{shard[0]}of{shard[1]}" if shard else "")), \
            step_bar(f"{protocol} {method}/{task}", progress) as bar:
        for k, (budget, seed) in enumerate(cells):
            metrics = cached(budget, seed)
            if metrics is None and (budget, seed) in mine:
                tags = {"method": method, "task": task, "protocol": protocol, "label_budget": budget, "seed": seed}
                with tracking.run("cell", {"label_budget": budget, "seed": seed}, sweep.ds.dataset_hash, tags=tags,
                                  nested=True, run_name=f"{method}-{task}-{protocol}-n{budget}-s{seed}"):
                    metrics = train_cell(budget, seed, lambda i, n: bar(k * n + i, len(cells) * n))
                    tracking.log_metrics({f"test_{m}": v for m, v in metrics.items()})
                atomic_write_json(out / "cells" / f"b{budget}_s{seed}.json",
                                  {"settings_hash": settings_hash, "test": metrics, "label_budget": budget, "seed": seed})
            if metrics is not None:
                done[budget, seed] = metrics
            bar((k + 1) * steps_per_cell, len(cells) * steps_per_cell)
        for cell in cells:  # other jobs' cells may have finished meanwhile
            if cell not in done and (metrics := cached(*cell)) is not None:
                done[cell] = metrics
        rows = [{"method": method, "task": task, "protocol": protocol, "label_budget": budget, "seed": seed,
                 "metric": name, "value": value, **extra}
                for budget, seed in cells if (budget, seed) in done for name, value in done[budget, seed].items()]
        results = pd.DataFrame(rows)
        results.attrs["missing"] = len(cells) - len(done)
        if not results.attrs["missing"]:
            atomic_write_text(out / "results.csv", results.to_csv(index=False))
            tracking.log_artifact(out / "results.csv")
    return results


def finetune(task: str, data: str | Path, out: str | Path, init: str | Path | None = None,
             budgets: list[int] = (100, 250, 500, 1000), seeds: list[int] = (0, 1), protocol: str = "finetune",
             backbone: str = "resnet9", width: float = 0.25, config: FinetuneConfig = FinetuneConfig(),
             progress: bool = True, colour: str = "rgb", bn: str | None = None,
             shard: tuple[int, int] | None = None, verify: bool = False) -> pd.DataFrame:
    """Train ``task`` at every label budget × seed; writes and returns ``OUT/results.csv``
    (``shard``: only this job's cells, see ``run_cells``)."""
    frozen = parse_protocol(protocol)
    bn = bn or ("frozen" if frozen else "train")
    if bn not in BN_MODES:
        raise UserError(f"unknown batch-norm mode {bn!r}: choose from {', '.join(BN_MODES)}")
    check_config(config)
    out = checks.output_folder(out)
    sweep = prepare(task, data, init, budgets, seeds, backbone, width, colour, verify)
    if frozen and sweep.pretrained is None:
        raise UserError(f"protocol {protocol!r} freezes pretrained stages: give --init")
    settings = {"task": task, "method": sweep.method, "protocol": protocol, "bn": bn, **sweep.columns(),
                **config_key(config)}
    params = {"budgets": ",".join(map(str, budgets)), "seeds": ",".join(map(str, seeds)), "init": str(init or ""),
              "data": str(data), "device": str(sweep.device), "stage": "finetune"}
    extra = {**sweep.columns(), "frozen_blocks": frozen, "bn": bn, "steps": config.steps}

    def train_cell(budget: int, seed: int, progress_cb) -> dict:
        return _train_cell(sweep, budget, seed, frozen, bn, config, progress_cb)

    return run_cells(sweep, out, protocol, budgets, seeds, settings, params, config.steps, train_cell, progress, extra,
                     shard)


def _train_cell(sweep: Sweep, budget: int, seed: int, frozen: int, bn: str, config: FinetuneConfig,
                progress) -> dict:
    model = train_model(sweep, budget, seed, frozen, bn, config, progress)
    return evaluate(model, sweep.task, sweep.ds.images[sweep.test_idx], sweep.targets[sweep.test_idx], sweep.device)


def train_model(sweep: Sweep, budget: int, seed: int, frozen: int, bn: str, config: FinetuneConfig, progress,
                on_val: Callable[[int, dict], None] | None = None) -> nn.Module:
    """Train one cell's model; validate on held-out models after every epoch (logged, and passed to
    ``on_val(epoch, metrics)``, which may stop training by raising). The test split is not touched."""
    t, ds, device = sweep.task, sweep.ds, sweep.device
    subset = sweep.subset(budget, seed)
    torch.manual_seed(seed)
    net = (copy.deepcopy(sweep.pretrained) if sweep.pretrained is not None
           else create_backbone(sweep.backbone, width=sweep.width, colour=sweep.colour))
    model = SupervisedModel(net, t.head(net.out_dim), t.dense, frozen, bn).to(device).to(
        memory_format=torch.channels_last)
    images = torch.from_numpy(ds.images[subset]).to(device)
    targets = torch.from_numpy(sweep.targets[subset]).to(device)
    steps_per_epoch = max(1, config.steps // config.epochs)
    cfg = TrainConfig(epochs=config.epochs, steps_per_epoch=steps_per_epoch, batch_size=config.batch_size,
                      lr=config.lr, weight_decay=config.weight_decay, warmup_epochs=min(1.0, config.epochs / 4),
                      seed=seed, schedule=config.schedule)
    val_images, val_targets = ds.images[sweep.val_idx], sweep.targets[sweep.val_idx]

    def on_epoch(epoch: int, logs: dict) -> dict:
        metrics = evaluate(model, t, val_images, val_targets, device)
        val = {f"val_{k}": v for k, v in metrics.items()}
        tracking.log_metrics({**logs, **val}, step=epoch)
        if on_val:
            on_val(epoch, metrics)
        return val

    tracking.log_params({"n_labelled": len(subset)})
    fit(SupervisedObjective(model, t, images, targets, config.pad), len(subset), cfg, on_epoch=on_epoch,
        progress=progress)
    return model
