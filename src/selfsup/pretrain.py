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
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from . import checks, distributed, tracking
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
             seed: int = 0, progress: bool = True, colour: str = "rgb",
             compile: bool = False, probe: bool = False, schedule: str = "cosine",
             method_kwargs: dict | None = None, on_epoch_cb: Callable[[int, dict], None] | None = None,
             parent_run_id: str | None = None, run_name: str | None = None, replace: bool = False,
             verify: bool = False) -> dict:
    """Pretrain ``method`` on the train split of ``data``; writes ``backbone.safetensors`` and
    ``meta.json`` to ``out`` (and ``checkpoint.pt`` after every epoch, to resume from).

    ``method="scratch"`` trains nothing and writes only ``meta.json`` (the backbone's name, width and
    colour space): finetuning from it is training from scratch, so a pipeline can treat the
    baseline like any other initialisation.

    ``method_kwargs`` sets the method's own knobs (e.g. SimCLR's temperature); ``on_epoch_cb(epoch,
    logs)`` sees every epoch's logs (with ``probe_val_acc`` when ``probe``) and may stop training by
    raising (Optuna's pruning); ``parent_run_id`` nests the MLflow run under another run.

    What ``out`` already holds is never lost by accident: a finished backbone of the same settings is
    returned as it is; a checkpoint of the same settings is resumed; a backbone or checkpoint of other settings is an error unless ``replace``, which deletes them
    first. ``verify`` checks the dataset's sha256 checksums before training."""
    checks.numbers(width=width, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed)
    out = checks.output_folder(out)
    if colour not in COLOURS:
        raise UserError(f"unknown colour space {colour!r}: choose from {', '.join(COLOURS)}")
    if method == SCRATCH:
        return _scratch_meta(data, out, backbone or "resnet9", width, colour, replace, verify)
    METHODS.get(method)  # fail fast on unknown names
    backbone = default_backbone(method, backbone or "resnet9")
    BACKBONES.get(backbone)
    check_schedule(schedule)
    ds = load_dataset(data, verify=verify)
    ds.require_splits("train", *(["val"] if probe else []))
    if probe and ds.set_name != "single":
        raise UserError(f"the online probe classifies single-object images; {str(data)!r} is a {ds.set_name}-object dataset")
    rank, world = distributed.setup()
    if batch_size % world:
        raise UserError(f"batch size {batch_size} does not split over {world} processes")
    main = rank == 0
    colour = "lab" if backbone.endswith("_split") else colour  # the split backbone is Lab whatever was asked
    settings = {"method": method, "backbone": backbone, "width": width, "colour": colour, "epochs": epochs,
                "batch_size": batch_size, "lr": lr, "schedule": schedule, "weight_decay": weight_decay, "seed": seed,
                "dataset_hash": ds.dataset_hash, "online_probe": probe,
                **{f"method.{k}": v for k, v in (method_kwargs or {}).items()}}
    finished = _claim_output(out, settings, replace)
    if finished is not None:
        return finished
    if main:
        out.mkdir(parents=True, exist_ok=True)
    train_idx = torch.from_numpy(ds.split_indices("train"))
    device = distributed.device()
    torch.manual_seed(seed)
    bb = create_backbone(backbone, width=width, colour=colour)
    assert bb.colour == colour
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
                      checkpoint=out / CHECKPOINT_FILE, resume=True, progress=bar, checkpoint_tag=settings)
        synced = distributed.in_sync(net)
        meta = {**params, "dataset_hash": ds.dataset_hash, "variant": ds.variant, "final_loss": history[-1]["loss"],
                "train_time_s": sum(h["epoch_time_s"] for h in history),
                "images_per_s": history[-1]["images_per_s"], "ranks_in_sync": synced}
        if probe:
            meta["probe_val_acc"] = history[-1]["probe_val_acc"]
        if main:
            state = net.backbone.state_dict()
            tmp = out / f"{BACKBONE_FILE}.tmp{os.getpid()}"
            save_file({k: v.contiguous().cpu() for k, v in state.items()}, tmp)
            os.replace(tmp, out / BACKBONE_FILE)  # never a half-written backbone
            atomic_write_json(out / META_FILE, meta)
            tracking.log_metrics({"final_loss": meta["final_loss"], "train_time_s": meta["train_time_s"]})
            tracking.log_artifact(out / BACKBONE_FILE)
            tracking.log_artifact(out / META_FILE)
            tracking.log_artifact(out / CHECKPOINT_FILE)
    distributed.barrier()
    if not synced:
        raise RuntimeError("data-parallel ranks ended with different parameters")
    return meta


def _describe(settings: dict, other: dict) -> str:
    """The first setting where ``other`` differs from ``settings``, as 'NAME A (asked: B)'."""
    for key, want in settings.items():
        if other.get(key) != want:
            return f"{key} {other.get(key)!r} (asked: {want!r})"
    return "none"


def _claim_output(out: Path, settings: dict, replace: bool) -> dict | None:
    """Decide what happens to what ``out`` holds before anything is written there. Returns the
    finished meta when ``out`` already holds this exact pretraining; raises when it holds another."""
    ckpt = out / CHECKPOINT_FILE
    if replace:
        for name in (META_FILE, BACKBONE_FILE, CHECKPOINT_FILE):  # meta first: never a meta without its backbone
            (out / name).unlink(missing_ok=True)
        return None
    meta = _read_meta(out, "output folder", "pass --replace to overwrite it, or choose another --out")
    if meta is not None:
        same = all(meta.get(k) == v for k, v in settings.items())
        if same and (settings["method"] == SCRATCH or (out / BACKBONE_FILE).is_file()):
            return {**meta, "train_time_s": meta.get("train_time_s", 0.0), "final_loss": meta.get("final_loss", float("nan")),
                    "already_done": True}
        if same:
            raise UserError(f"output folder {str(out)!r} holds the {META_FILE} of this pretraining but no {BACKBONE_FILE}: "
                            "pass --replace to train it again, or choose another --out")
        what = "a scratch description" if meta.get("method") == SCRATCH else f"a pretrained {meta.get('method')} backbone"
        raise UserError(f"output folder {str(out)!r} already holds {what} with other settings ({_describe(settings, meta)}): "
                        "pass --replace to overwrite it, or choose another --out")
    if (out / BACKBONE_FILE).is_file():
        raise UserError(f"output folder {str(out)!r} holds a {BACKBONE_FILE} without {META_FILE}: "
                        "pass --replace to overwrite it, or choose another --out")
    if ckpt.is_file():
        if settings["method"] == SCRATCH:
            raise UserError(f"output folder {str(out)!r} holds a pretraining checkpoint: pass --replace to "
                            "overwrite it with a scratch description, or choose another --out")
        try:
            # mmap: only the small tag is read here; fit() loads the tensors when it resumes
            tag = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True).get("tag")
        except Exception as e:  # noqa: BLE001  (torch raises many kinds for a damaged file)
            raise UserError(f"checkpoint {str(ckpt)!r} is unreadable ({type(e).__name__}): pass --replace to "
                            "start over") from None
        if tag != settings:
            raise UserError(f"output folder {str(out)!r} holds a checkpoint of other settings "
                            f"({_describe(settings, tag or {})}): --resume continues only a checkpoint of the same "
                            "settings; pass --replace to start over, or choose another --out")
    return None


def _scratch_meta(data, out: Path, backbone: str, width: float, colour: str, replace: bool, verify: bool) -> dict:
    BACKBONES.get(backbone)
    load_dataset(data, verify=verify)  # a scratch folder is made for a dataset: it must be one
    create_backbone(backbone, width=width, colour=colour)  # checks the backbone's own constraints
    meta = {"method": SCRATCH, "backbone": backbone, "width": width, "colour": colour}
    finished = _claim_output(out, meta, replace)
    if finished is not None:
        return finished
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / META_FILE, meta)
    return {**meta, "train_time_s": 0.0, "final_loss": float("nan")}


def _read_meta(folder: Path, role: str = "checkpoint folder", advice: str = "") -> dict | None:
    """``folder``'s meta.json (None when there is none); a damaged one is a one-line error."""
    meta_file = folder / META_FILE
    if not meta_file.is_file():
        return None
    advice = f"; {advice}" if advice else ""
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{role} {str(folder)!r}: {META_FILE} is not valid JSON ({e}){advice}") from None
    if not isinstance(meta, dict) or not {"method", "backbone", "width"} <= set(meta):
        raise UserError(f"{role} {str(folder)!r}: {META_FILE} lacks method, backbone and width{advice}")
    return meta


def is_scratch(init: str | Path) -> bool:
    """Whether ``init`` is a ``--method scratch`` folder (random initialisation, no weights)."""
    meta = _read_meta(Path(init)) if Path(init).is_dir() else None
    return meta is not None and meta.get("method") == SCRATCH


def load_pretrained(init: str | Path, device: torch.device | None = None) -> tuple[torch.nn.Module | None, dict]:
    """The backbone saved by :func:`pretrain` in folder ``init``, and its meta (``None`` and the meta
    for a ``scratch`` folder). A damaged folder (bad JSON, a file that is not safetensors, weights of
    another shape) is a one-line error."""
    from safetensors import SafetensorError

    init = Path(init)
    if not init.is_dir():
        raise UserError(f"checkpoint folder {str(init)!r} does not exist" if not init.exists() else
                        f"--init {str(init)!r} is a file: give the folder `selfsup pretrain --out` wrote")
    meta = _read_meta(init)
    if meta is not None and meta.get("method") == SCRATCH:
        return None, meta
    if meta is None or not (init / BACKBONE_FILE).is_file():
        raise UserError(f"checkpoint folder {str(init)!r} has no {BACKBONE_FILE} and {META_FILE} (run `selfsup pretrain`)")
    try:
        net = create_backbone(meta["backbone"], width=float(meta["width"]), colour=meta.get("colour", "rgb"))
    except (TypeError, ValueError) as e:
        raise UserError(f"checkpoint folder {str(init)!r}: {META_FILE} describes no backbone ({e})") from None
    try:
        state = load_file(init / BACKBONE_FILE)
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"checkpoint folder {str(init)!r}: {BACKBONE_FILE} is not a readable safetensors file "
                        f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        first = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e))
        raise UserError(f"checkpoint folder {str(init)!r}: the weights do not fit the {meta['backbone']} of width "
                        f"{meta['width']} that {META_FILE} describes ({first.rstrip('.')})") from None
    return net.to(device or "cpu"), meta
