"""Self-supervised pretraining: a method on a dataset's train split, saved as safetensors.

Runs on one process, or data-parallel under ``torchrun`` (:mod:`selfsup.distributed`). An optional
online linear probe (``probe=True``) trains a linear classifier on detached backbone features of
the clean images alongside the method and logs its accuracy on the val split every epoch: a cheap
view of representation quality during pretraining that never changes the backbone's gradients.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from . import distributed, tracking
from .augment import map_batches, to_input
from .colour import COLOURS
from .dataset import load_dataset
from .errors import UserError
from .methods import METHODS, create_method, default_backbone
from .models import BACKBONES, create_backbone
from .progress import step_bar
from .provenance import atomic_write_json
from .schedule import check_schedule
from .train import TrainConfig, fit

BACKBONE_FILE = "backbone.safetensors"
META_FILE = "meta.json"
CHECKPOINT_FILE = "checkpoint.pt"
SCRATCH = "scratch"  # not a method: the name of random initialisation


class PretrainObjective:
    """Indices → uint8 images resident on the device → the method's loss (+ the online probe's)."""

    def __init__(self, method, images: torch.Tensor, probe_targets: torch.Tensor | None = None):
        self.module, self.images, self.probe_targets = method, images, probe_targets

    def loss(self, idx, generator):
        x = to_input(self.images[idx.to(self.images.device)])
        loss, scalars = self.module.loss(x, generator)
        if self.probe_targets is not None:
            with torch.no_grad():
                feats = self.module.backbone(x)
            logits = self.module.online_probe(feats.float())
            y = self.probe_targets[idx.to(self.probe_targets.device)]
            loss = loss + F.cross_entropy(logits, y)
            scalars = {**scalars, "probe_train_acc": (logits.argmax(1) == y).float().mean().detach()}
        return loss, scalars


@torch.no_grad()
def probe_accuracy(method: nn.Module, images: np.ndarray, targets: np.ndarray, device, batch: int = 512) -> float:
    was = method.training
    method.eval()
    logits = map_batches(lambda x: method.online_probe(method.backbone(x).float()), images, device, batch)
    method.train(was)
    return float((logits.argmax(1).numpy() == targets).sum()) / max(1, len(images))


def pretrain(method: str, data: str | Path, out: str | Path, backbone: str | None = None, width: float = 0.25,
             epochs: int = 10, batch_size: int = 128, lr: float = 2e-3, weight_decay: float = 5e-4,
             seed: int = 0, resume: bool = False, progress: bool = True, colour: str = "rgb",
             compile: bool = False, probe: bool = False, schedule: str = "cosine",
             method_kwargs: dict | None = None, on_epoch_cb: Callable[[int, dict], None] | None = None,
             parent_run_id: str | None = None, run_name: str | None = None) -> dict:
    """Pretrain ``method`` on the train split of ``data``; writes ``backbone.safetensors`` and
    ``meta.json`` to ``out`` (and ``checkpoint.pt`` after every epoch, for ``resume``).

    ``method="scratch"`` trains nothing and writes only ``meta.json`` (the backbone's name, width and
    colour space): finetuning from it is training from scratch, so a pipeline can treat the
    baseline like any other initialisation.

    ``method_kwargs`` sets the method's own knobs (e.g. SimCLR's temperature); ``on_epoch_cb(epoch,
    logs)`` sees every epoch's logs (with ``probe_val_acc`` when ``probe``) and may stop training by
    raising (Optuna's pruning); ``parent_run_id`` nests the MLflow run under another run."""
    if method == SCRATCH:
        return _scratch_meta(data, out, backbone or "resnet9", width, colour)
    METHODS.get(method)  # fail fast on unknown names
    backbone = default_backbone(method, backbone or "resnet9")
    BACKBONES.get(backbone)
    for name, val in (("epochs", epochs), ("batch_size", batch_size)):
        if val < 1:
            raise UserError(f"invalid {name} {val}: must be at least 1")
    if width <= 0:
        raise UserError(f"invalid width {width}: must be positive")
    if colour not in COLOURS:
        raise UserError(f"unknown colour space {colour!r}: choose from {', '.join(COLOURS)}")
    check_schedule(schedule)
    ds = load_dataset(data)
    if probe and ds.set_name != "single":
        raise UserError(f"the online probe classifies single-object images; {str(data)!r} is a {ds.set_name}-object dataset")
    rank, world = distributed.setup()
    if batch_size % world:
        raise UserError(f"batch size {batch_size} does not split over {world} processes")
    main = rank == 0
    out = Path(out)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    train_idx = torch.from_numpy(ds.split_indices("train"))
    device = distributed.device()
    torch.manual_seed(seed)
    bb = create_backbone(backbone, width=width, colour=colour)
    colour = bb.colour  # the split backbone is Lab whatever was asked
    method_kwargs = dict(method_kwargs or {})
    known = set(inspect.signature(METHODS.get(method)).parameters) - {"backbone"}
    unknown = sorted(set(method_kwargs) - known)
    if unknown:
        raise UserError(f"unknown setting {unknown[0]!r} for method {method!r}: choose from {', '.join(sorted(known))}")
    net = create_method(method, bb, **method_kwargs)
    if probe:
        net.online_probe = nn.Linear(bb.out_dim, len(ds.manifest["classes"]))
    net = net.to(device).to(memory_format=torch.channels_last)
    if compile:
        net.backbone.compile()  # in place: parameter names (and the saved file) stay the same
    images = torch.from_numpy(ds.images[train_idx.numpy()]).to(device)  # (N, H, W, 3) uint8
    probe_targets = torch.from_numpy(ds.labels["class_id"].to_numpy()[train_idx.numpy()]).long().to(device) if probe else None
    steps = max(1, len(images) // batch_size)
    cfg = TrainConfig(epochs=epochs, steps_per_epoch=steps, batch_size=batch_size, lr=lr,
                      weight_decay=weight_decay, seed=seed, schedule=schedule)
    params = {"method": method, "backbone": backbone, "width": width, "colour": colour, "epochs": epochs,
              "batch_size": batch_size, "lr": lr, "schedule": schedule, "weight_decay": weight_decay, "seed": seed, "data": str(data),
              "n_images": len(images), "device": str(device), "world_size": world, "compile": compile,
              "online_probe": probe, **{f"method.{k}": v for k, v in method_kwargs.items()}}
    val_idx = ds.split_indices("val")
    val_images, val_targets = ds.images[val_idx], ds.labels["class_id"].to_numpy()[val_idx]

    def on_epoch(epoch: int, logs: dict) -> dict:
        more = {"probe_val_acc": probe_accuracy(net, val_images, val_targets, device)} if probe else {}
        if main:
            tracking.log_metrics({**logs, **more}, step=epoch)
            if on_epoch_cb is not None:
                on_epoch_cb(epoch, {**logs, **more})
        return more

    run = (tracking.run("pretrain", params, ds.dataset_hash, tags={"method": method, "device": str(device), "set": ds.set_name,
                                                                  "variant": ds.variant},
                        run_name=run_name or f"pretrain-{method}", parent_run_id=parent_run_id)
           if main else contextlib.nullcontext())
    with run, step_bar(f"pretrain {method}", progress and main) as bar:
        history = fit(PretrainObjective(net, images, probe_targets), len(images), cfg, on_epoch=on_epoch,
                      checkpoint=out / CHECKPOINT_FILE, resume=resume, progress=bar)
        synced = distributed.in_sync(net)
        meta = {**params, "dataset_hash": ds.dataset_hash, "variant": ds.variant, "final_loss": history[-1]["loss"],
                "train_time_s": sum(h["epoch_time_s"] for h in history),
                "images_per_s": history[-1]["images_per_s"], "ranks_in_sync": synced}
        if probe:
            meta["probe_val_acc"] = history[-1]["probe_val_acc"]
        if main:
            state = net.backbone.state_dict()
            save_file({k: v.contiguous().cpu() for k, v in state.items()}, out / BACKBONE_FILE)
            atomic_write_json(out / META_FILE, meta)
            tracking.log_metrics({"final_loss": meta["final_loss"], "train_time_s": meta["train_time_s"]})
            tracking.log_artifact(out / BACKBONE_FILE)
            tracking.log_artifact(out / META_FILE)
            tracking.log_artifact(out / CHECKPOINT_FILE)
    distributed.barrier()
    if not synced:
        raise RuntimeError("data-parallel ranks ended with different parameters")
    return meta


def _scratch_meta(data, out, backbone: str, width: float, colour: str) -> dict:
    BACKBONES.get(backbone)
    create_backbone(backbone, width=width, colour=colour)  # checks width and colour
    meta = {"method": SCRATCH, "backbone": backbone, "width": width, "colour": colour}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / BACKBONE_FILE).unlink(missing_ok=True)
    atomic_write_json(out / META_FILE, meta)
    return {**meta, "train_time_s": 0.0, "final_loss": float("nan")}


def load_pretrained(init: str | Path, device: torch.device | None = None) -> tuple[torch.nn.Module | None, dict]:
    """The backbone saved by :func:`pretrain` in folder ``init``, and its meta (``None`` and the meta
    for a ``scratch`` folder)."""
    init = Path(init)
    meta_file = init / META_FILE
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else None
    if meta is not None and meta.get("method") == SCRATCH:
        return None, meta
    if meta is None or not (init / BACKBONE_FILE).is_file():
        raise UserError(f"checkpoint folder {str(init)!r} has no {BACKBONE_FILE} and {META_FILE} (run `selfsup pretrain`)")
    net = create_backbone(meta["backbone"], width=meta["width"], colour=meta.get("colour", "rgb"))
    net.load_state_dict(load_file(init / BACKBONE_FILE))
    return net.to(device or "cpu"), meta
