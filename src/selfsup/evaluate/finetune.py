"""Finetuning across label budgets and seeds, from scratch or from a pretrained backbone.

Protocols (``protocol``):

- ``finetune``: every weight trains. Batch norm trains too (batch statistics, running statistics
  updated) unless ``bn="frozen"``, which keeps every BN layer at the pretrained statistics.
- ``frozen-k`` (k = 1..3), the paper's definition (§6, Fig. 8): ResNet9 is a stem and three main
  blocks, and the network is frozen *up to* block k: the stem and blocks 1..k keep their pretrained
  weights. ``frozen-3`` freezes the whole backbone, so only the task head trains (two fully connected
  layers for image-level tasks: "slightly more expressive than the linear evaluation"). By default
  the frozen layers' BN also keeps the pretrained statistics (``bn="frozen"``); ``bn="train"`` lets
  those statistics follow the new data (their affine weights stay frozen).
- the probes on frozen features (``linear``, ``knn``) live in :mod:`selfsup.evaluate.probe`.

Every (budget, seed) cell trains for the same number of steps, whatever the budget (small
subsets are repeated), validates on held-out models each epoch and reports its final metrics on
the test split (never a best epoch chosen on test). Finished cells are kept in ``OUT/cells/``;
a killed sweep rerun with the same settings trains only the missing cells (:mod:`selfsup.evaluate.sweep`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from selfsup.core import checks, tracking
from selfsup.core.config import Finetune
from selfsup.core.defaults import DEFAULT_BACKBONE, DEFAULT_BUDGETS, DEFAULT_COLOUR, DEFAULT_SEEDS, DEFAULT_WIDTH
from selfsup.core.errors import Diverged, UserError
from selfsup.data.augment import (
    finetune_view,
    flip_targets,
    random_flip,
    random_translate,
    resident,
    to_input,
)
from selfsup.evaluate.sweep import Cell, Sweep, evaluate, prediction_record, prepare, run_cells, save_predictions
from selfsup.evaluate.tasks import Task
from selfsup.models import create_backbone
from selfsup.train.loop import TrainConfig, fit
from selfsup.train.schedule import check_schedule
from selfsup.train.stacked import StackedModels

PROTOCOLS = ("finetune", "frozen-1", "frozen-2", "frozen-3")
AUGMENTS = ("paper", "flip-translate")  # finetuning augmentation: the paper's appendix A, or flip + translation only
BN_MODES = ("train", "frozen")


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int = Finetune().steps
    epochs: int = Finetune().epochs  # validation points; steps are split evenly between them
    batch_size: int = Finetune().batch_size
    lr: float = Finetune().lr
    weight_decay: float = 5e-4
    pad: int = 4
    schedule: str = "cosine"  # learning-rate decay after the warm-up: cosine or linear
    augment: str = "paper"  # paper (flip, crop, colour, Cutout: augment.finetune_view) or flip-translate (pad px)
    compile: bool = False  # torch.compile the training step
    deterministic: bool = False  # torch's deterministic algorithms (bit-exact reruns on one GPU)


def default_stack(device: torch.device) -> int:
    """Cells trained together by default: 16 on a GPU (many small models fill it); 1 on the CPU, where
    a stacked (vmapped, grouped-convolution) step is slower than the cells one after another
    (``bench/sweep_bench.py``: docs/benchmarks.md "Stacked sweeps")."""
    return 16 if device.type == "cuda" else 1


def check_config(config: FinetuneConfig) -> None:
    check_schedule(config.schedule)
    if config.augment not in AUGMENTS:
        raise UserError(f"unknown augmentation {config.augment!r}: choose from {', '.join(AUGMENTS)}")
    checks.numbers(
        steps=config.steps,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=config.weight_decay,
    )


def config_key(config: FinetuneConfig) -> dict:
    """The config as it enters the cache key of finished cells; a new field at its default is left
    out, so cells finished before the field existed stay valid."""
    d = asdict(config)
    if d["schedule"] == "cosine":
        del d["schedule"]
    if d["augment"] == "flip-translate":  # what every cell trained with before the field existed
        del d["augment"]
    for name in ("compile", "deterministic"):  # how, not what, a cell trains
        if not d[name]:
            del d[name]
    return d


def parse_protocol(protocol: str, allowed=PROTOCOLS) -> int:
    """The number of frozen backbone stages of a training protocol."""
    if protocol not in allowed:
        raise UserError(f"unknown protocol {protocol!r}: choose from {', '.join(allowed)}")
    return int(protocol.split("-")[1]) if protocol.startswith("frozen-") else 0


def frozen_groups(frozen_blocks: int) -> int:
    """Backbone groups (``Backbone.groups()``: the stem, then the main blocks) that ``frozen-k`` freezes:
    the stem and the first k blocks (none for ``finetune``)."""
    return frozen_blocks + 1 if frozen_blocks else 0


class SupervisedModel(nn.Module):
    """Backbone + task head; the first ``frozen_blocks`` stages frozen, BN handled as ``bn`` says."""

    def __init__(
        self, backbone: nn.Module, head: nn.Module, dense: bool = False, frozen_blocks: int = 0, bn: str = "train"
    ):
        super().__init__()
        self.backbone, self.head, self.dense = backbone, head, dense
        self.frozen = [m for group in backbone.groups()[: frozen_groups(frozen_blocks)] for m in group]
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
    def __init__(
        self,
        model: SupervisedModel,
        task: Task,
        images: torch.Tensor,
        targets: torch.Tensor,
        pad: int,
        augment: str = "paper",
    ):
        self.module, self.task, self.images, self.targets = model, task, images, targets
        self.augment = augment
        self.pad = 0 if task.dense else pad  # dense targets would need the same shift: no translation there

    def batch(self, idx: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The (augmented) inputs and targets of the items ``idx``."""
        idx = idx.to(self.images.device)
        x, y = to_input(self.images[idx]), self.targets[idx]
        if self.augment == "paper":
            return finetune_view(x, y, generator, self.task.dense, self.task.mirrored)
        if self.pad:  # flip-translate (image-level tasks only: dense ones have no pad)
            x, flip = random_flip(x, generator)
            return random_translate(x, self.pad, generator), flip_targets(y, flip, self.task.mirrored)
        return x, y

    def loss(self, idx, generator):
        x, y = self.batch(idx, generator)
        return self.task.loss(self.module(x), y), {}


class StackedSupervisedObjective:
    """The objectives of several cells as one: each draws its batch and augmentation from its own
    generator (as alone), the stacked models run as one, and the loss is the vector of the cells' losses
    (:func:`~selfsup.train.loop.fit` steps on their sum)."""

    def __init__(self, objectives: list[SupervisedObjective]):
        self.objectives = objectives
        self.module = StackedModels([o.module for o in objectives])

    def loss(self, idx: list[torch.Tensor], generators: list[torch.Generator]):
        inputs, targets = zip(*(o.batch(i, g) for o, i, g in zip(self.objectives, idx, generators)))
        out = self.module(torch.stack(inputs))
        task = self.objectives[0].task
        return torch.stack([task.loss(o, y) for o, y in zip(out, targets)]), {}  # one loss per cell


def finetune(
    task: str,
    data: str | Path,
    out: str | Path,
    init: str | Path | None = None,
    budgets: list[int] = DEFAULT_BUDGETS,
    seeds: list[int] = DEFAULT_SEEDS,
    protocol: str = "finetune",
    backbone: str = DEFAULT_BACKBONE,
    width: float = DEFAULT_WIDTH,
    config: FinetuneConfig = FinetuneConfig(),
    progress: bool = True,
    colour: str = DEFAULT_COLOUR,
    bn: str | None = None,
    shard: tuple[int, int] | None = None,
    verify: bool = False,
    stack: int | None = None,
) -> pd.DataFrame:
    """Train ``task`` at every label budget × seed; writes and returns ``OUT/results.csv``
    (``shard``: only this job's cells, see :func:`selfsup.evaluate.sweep.run_cells`). ``stack`` cells train
    together as one stacked model (default: :func:`default_stack`); it changes speed, not results
    beyond float rounding, and is not part of a finished cell's cache key."""
    frozen = parse_protocol(protocol)
    bn = bn or ("frozen" if frozen else "train")
    if bn not in BN_MODES:
        raise UserError(f"unknown batch-norm mode {bn!r}: choose from {', '.join(BN_MODES)}")
    check_config(config)
    if stack is not None:
        checks.numbers(stack=stack)
    out = checks.output_folder(out)
    sweep = prepare(task, data, init, budgets, seeds, backbone, width, colour, verify)
    if frozen and sweep.pretrained is None:
        raise UserError(f"protocol {protocol!r} freezes pretrained stages: give --init")
    spec = sweep.spec(
        "finetune",
        protocol,
        budgets,
        seeds,
        init=init,
        data=data,
        key={"bn": bn, **config_key(config)},
        code=__name__,
        frozen_blocks=frozen,
        bn=bn,
        steps=config.steps,
        steps_per_cell=config.steps,
        shard=shard,
        stack=stack or default_stack(sweep.device),
    )

    # what the report's gallery shows: the first seed's models at the smallest and the largest budget
    gallery = {Cell(b, min(seeds)) for b in (min(budgets), max(budgets))}

    def train_group(cells: list[Cell], progress_cb) -> list[tuple[dict, list[dict]]]:
        models, histories = train_models(sweep, cells, frozen, bn, config, progress_cb)
        test = sweep.ds.images[sweep.test_idx], sweep.targets[sweep.test_idx]
        for cell, model in zip(cells, models):
            if cell in gallery:
                save_predictions(out, cell, prediction_record(model, sweep, protocol))
        return [(evaluate(m, sweep.task, *test, sweep.device), h) for m, h in zip(models, histories)]

    return run_cells(sweep, spec, out, train_group, progress)


def train_models(
    sweep: Sweep,
    cells: list[Cell],
    frozen: int,
    bn: str,
    config: FinetuneConfig,
    progress,
    on_val: Callable[[int, int, dict], None] | None = None,
) -> tuple[list[nn.Module], list[list[dict]]]:
    """Train the models of ``cells`` (one alone, several stacked: :mod:`selfsup.train.stacked`); validate
    each on held-out models after every epoch. Returns the models and each one's per-epoch logs
    (training scalars and ``val_*`` metrics). ``on_val(epoch, i, metrics)`` sees cell i's validation
    metrics and may stop training by raising. The test split is not touched."""
    t, ds, device = sweep.task, sweep.ds, sweep.device
    subsets = [sweep.subset(cell.budget, cell.seed) for cell in cells]
    models = [_build_model(sweep, cell.seed, frozen, bn) for cell in cells]
    data = [(resident(ds.images, s, device), torch.from_numpy(sweep.targets[s]).to(device)) for s in subsets]
    objectives = [SupervisedObjective(m, t, x, y, config.pad, config.augment) for m, (x, y) in zip(models, data)]
    stacked = StackedSupervisedObjective(objectives) if len(cells) > 1 else None
    steps_per_epoch = max(1, config.steps // config.epochs)
    cfg = TrainConfig(
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=config.weight_decay,
        warmup_epochs=min(1.0, config.epochs / 4),
        seed=cells[0].seed,
        schedule=config.schedule,
        compile=config.compile,
        deterministic=config.deterministic,
    )
    val_images, val_targets = ds.images[sweep.val_idx], sweep.targets[sweep.val_idx]
    histories: list[list[dict]] = [[] for _ in cells]

    def on_epoch(epoch: int, logs: dict) -> dict:
        trained = stacked.module.unstack() if stacked else models
        for i, model in enumerate(trained):
            metrics = evaluate(model, t, val_images, val_targets, device)
            histories[i].append({**logs, **{f"val_{k}": v for k, v in metrics.items()}})
            if on_val:
                on_val(epoch, i, metrics)
        return {}

    try:
        fit(
            stacked or objectives[0],
            [len(s) for s in subsets] if stacked else len(subsets[0]),
            cfg,
            on_epoch=on_epoch,
            progress=progress,
            replica_seeds=[cell.seed for cell in cells] if stacked else None,
        )
    except Diverged as e:  # no row, no cell file, no cell run: the cell is named, nothing of it kept
        cell = cells[e.replica or 0]
        raise e.within(f"{sweep.method}/{t.name} cell n={cell.budget}, seed {cell.seed}") from None
    return (stacked.module.unstack() if stacked else models), histories


def _build_model(sweep: Sweep, seed: int, frozen: int, bn: str) -> SupervisedModel:
    """One cell's model: the pretrained backbone (or a fresh one seeded by ``seed``) and a new head."""
    torch.manual_seed(seed)
    net = (
        copy.deepcopy(sweep.pretrained)
        if sweep.pretrained is not None
        else create_backbone(sweep.backbone, width=sweep.width, colour=sweep.colour)
    )
    model = SupervisedModel(net, sweep.task.head(net.out_dim), sweep.task.dense, frozen, bn)
    return model.to(sweep.device).to(memory_format=torch.channels_last)


def train_model(
    sweep: Sweep,
    budget: int,
    seed: int,
    frozen: int,
    bn: str,
    config: FinetuneConfig,
    progress,
    on_val: Callable[[int, dict], None] | None = None,
) -> nn.Module:
    """Train one cell's model alone, logging its validation metrics to the active MLflow run as they
    come (``on_val(epoch, metrics)`` may stop training by raising)."""

    def log(epoch: int, _: int, metrics: dict) -> None:
        tracking.log_metrics({f"val_{k}": v for k, v in metrics.items()}, step=epoch)
        if on_val:
            on_val(epoch, metrics)

    tracking.log_params({"n_labelled": len(sweep.subset(budget, seed))})
    models, _ = train_models(sweep, [Cell(budget, seed)], frozen, bn, config, progress, on_val=log)
    return models[0]
