"""Finetuning across label budgets and seeds, from scratch or from a pretrained backbone.

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

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import tracking
from .augment import flip_translate, to_input
from .budgets import label_subset
from .colour import COLOURS
from .dataset import Dataset, load_dataset
from .errors import UserError
from .models import BACKBONES, create_backbone
from .pretrain import load_pretrained
from .progress import step_bar
from .provenance import atomic_write_json, atomic_write_text
from .tasks import Task, get_task
from .train import TrainConfig, default_device, fit

PROTOCOLS = ("finetune",)
RESULT_COLUMNS = ["method", "task", "protocol", "label_budget", "seed", "metric", "value"]


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 300
    epochs: int = 3  # validation points; steps are split evenly between them
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    pad: int = 4


class SupervisedModel(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class SupervisedObjective:
    def __init__(self, model: SupervisedModel, task: Task, images: torch.Tensor, targets: torch.Tensor, pad: int):
        self.module, self.task, self.images, self.targets, self.pad = model, task, images, targets, pad

    def loss(self, idx, generator):
        idx = idx.to(self.images.device)
        x = flip_translate(to_input(self.images[idx]), self.pad, generator)
        return self.task.loss(self.module(x), self.targets[idx]), {}


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, images: np.ndarray, targets: np.ndarray, device, batch: int = 512) -> dict:
    """The task's metrics of ``model`` on all ``images`` (eval mode, no augmentation)."""
    model.eval()
    logits = torch.cat([model(to_input(torch.from_numpy(np.asarray(images[i:i + batch])).to(device))).float().cpu()
                        for i in range(0, len(images), batch)])
    return task.metrics(logits, torch.from_numpy(np.asarray(targets)))


def _parse_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}: choose from {', '.join(PROTOCOLS)}")
    return protocol


def finetune(task: str, data: str | Path, out: str | Path, init: str | Path | None = None,
             budgets: list[int] = (100, 250, 500, 1000), seeds: list[int] = (0, 1), protocol: str = "finetune",
             backbone: str = "resnet9", width: float = 0.25, config: FinetuneConfig = FinetuneConfig(),
             progress: bool = True, colour: str = "rgb") -> pd.DataFrame:
    """Train ``task`` at every label budget × seed; writes and returns ``OUT/results.csv``."""
    t = get_task(task)
    _parse_protocol(protocol)
    BACKBONES.get(backbone)
    if not budgets or not seeds:
        raise UserError("give at least one label budget and one seed")
    if config.steps < 1 or config.epochs < 1 or config.batch_size < 1:
        raise UserError(f"invalid training settings {asdict(config)}: steps, epochs and batch_size must be ≥ 1")
    ds = load_dataset(data)
    if ds.set_name != t.dataset_set:
        raise UserError(f"task {task!r} needs a {t.dataset_set}-object dataset, but {str(data)!r} is a "
                        f"{ds.set_name}-object dataset")
    device = default_device()
    pretrained, meta = (load_pretrained(init) if init else (None, {}))
    method = meta.get("method", "scratch")
    if pretrained is not None:
        backbone, width, colour = meta["backbone"], meta["width"], pretrained.colour
    elif colour not in COLOURS:
        raise UserError(f"unknown colour space {colour!r}: choose from {', '.join(COLOURS)}")
    targets_all = t.targets(ds.labels)
    train_idx = ds.split_indices("train")
    for b in budgets:  # check every budget before any training
        label_subset(train_idx, targets_all[train_idx], b, 0)
    out = Path(out)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    settings = {"task": task, "method": method, "protocol": protocol, "backbone": backbone, "width": width,
                "colour": colour,
                "dataset_hash": ds.dataset_hash, "pretrain_dataset_hash": meta.get("dataset_hash", ""),
                **asdict(config)}
    settings_hash = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    val_idx, test_idx = ds.split_indices("val"), ds.split_indices("test")
    extra = {"backbone": backbone, "width": width, "colour": colour, "dataset_hash": ds.dataset_hash,
             "pretrain_dataset_hash": meta.get("dataset_hash", ""), "steps": config.steps}

    cells = [(b, s) for b in budgets for s in seeds]
    rows: list[dict] = []
    params = {**settings, "budgets": ",".join(map(str, budgets)), "seeds": ",".join(map(str, seeds)),
              "init": str(init or ""), "data": str(data), "device": str(device)}
    with tracking.run("finetune", params, ds.dataset_hash, tags={"method": method, "task": task, "protocol": protocol},
                      run_name=f"finetune-{method}-{task}"), \
            step_bar(f"finetune {method}/{task}", progress) as bar:
        for k, (budget, seed) in enumerate(cells):
            cell_file = out / "cells" / f"b{budget}_s{seed}.json"
            cached = json.loads(cell_file.read_text()) if cell_file.exists() else None
            if cached and cached.get("settings_hash") == settings_hash:
                metrics = cached["test"]
            else:
                metrics = _train_cell(t, ds, targets_all, train_idx, val_idx, test_idx, budget, seed, pretrained,
                                      backbone, width, colour, config, device, method, protocol,
                                      lambda i, n: bar(k * n + i, len(cells) * n))
                atomic_write_json(cell_file, {"settings_hash": settings_hash, "test": metrics,
                                              "label_budget": budget, "seed": seed})
            bar((k + 1) * config.steps, len(cells) * config.steps)
            rows += [{"method": method, "task": task, "protocol": protocol, "label_budget": budget, "seed": seed,
                      "metric": name, "value": value, **extra} for name, value in metrics.items()]
        results = pd.DataFrame(rows)
        atomic_write_text(out / "results.csv", results.to_csv(index=False))
        tracking.log_artifact(out / "results.csv")
    return results


def _train_cell(t: Task, ds: Dataset, targets_all, train_idx, val_idx, test_idx, budget: int, seed: int,
                pretrained, backbone: str, width: float, colour: str, config: FinetuneConfig, device, method: str,
                protocol: str, progress) -> dict:
    subset = label_subset(train_idx, targets_all[train_idx], budget, seed)
    torch.manual_seed(seed)
    net = copy.deepcopy(pretrained) if pretrained is not None else create_backbone(backbone, width=width, colour=colour)
    model = SupervisedModel(net, t.head(net.out_dim)).to(device).to(memory_format=torch.channels_last)
    images = torch.from_numpy(ds.images[subset]).to(device)
    targets = torch.from_numpy(targets_all[subset]).to(device)
    steps_per_epoch = max(1, config.steps // config.epochs)
    cfg = TrainConfig(epochs=config.epochs, steps_per_epoch=steps_per_epoch, batch_size=config.batch_size,
                      lr=config.lr, weight_decay=config.weight_decay, warmup_epochs=min(1.0, config.epochs / 4),
                      seed=seed)
    val_images, val_targets = ds.images[val_idx], targets_all[val_idx]

    def on_epoch(epoch: int, logs: dict) -> dict:
        val = {f"val_{k}": v for k, v in evaluate(model, t, val_images, val_targets, device).items()}
        tracking.log_metrics({**logs, **val}, step=epoch)
        return val

    tags = {"method": method, "task": t.name, "protocol": protocol, "label_budget": budget, "seed": seed}
    with tracking.run("finetune-cell", {"label_budget": budget, "seed": seed, "n_labelled": len(subset)},
                      ds.dataset_hash, tags=tags, nested=True, run_name=f"{method}-{t.name}-n{budget}-s{seed}"):
        fit(SupervisedObjective(model, t, images, targets, config.pad), len(subset), cfg, on_epoch=on_epoch,
            progress=progress)
        test = evaluate(model, t, ds.images[test_idx], targets_all[test_idx], device)
        tracking.log_metrics({f"test_{k}": v for k, v in test.items()})
    return test
