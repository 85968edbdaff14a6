"""Self-supervised pretraining: a method on a dataset's train split, saved as safetensors.

Runs on one process, or data-parallel under ``torchrun`` (:mod:`selfsup.train.distributed`). An optional
online linear probe (``PretrainConfig.online_probe``) trains a linear classifier on detached backbone features of
the clean images alongside the method and logs its accuracy on the val split every epoch: a cheap
view of representation quality during pretraining that never changes the backbone's gradients.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from selfsup.core import checks, tracking
from selfsup.core.config import Pretrain
from selfsup.core.defaults import DEFAULT_BACKBONE, DEFAULT_COLOUR, DEFAULT_WIDTH
from selfsup.core.errors import Diverged, UserError
from selfsup.core.progress import step_bar
from selfsup.core.provenance import atomic_write_json, code_hash, git_commit
from selfsup.data.augment import map_batches, resident, to_input
from selfsup.data.colour import COLOURS
from selfsup.data.dataset import load_dataset
from selfsup.models import BACKBONES, create_backbone
from selfsup.pretrain.checkpoint import BACKBONE_FILE, CHECKPOINT_FILE, META_FILE, SCRATCH, read_meta
from selfsup.pretrain.methods import METHODS, create_method, default_backbone
from selfsup.train import distributed
from selfsup.train.loop import TrainConfig, cost_totals, fit
from selfsup.train.schedule import check_schedule


@dataclass(frozen=True)
class PretrainConfig:
    """What a pretraining run learns and how: everything that decides the saved weights."""

    method: str  # a registered method, or "scratch" (random initialisation: nothing is trained)
    backbone: str | None = None  # None: the default backbone family, in the variant the method needs
    width: float = DEFAULT_WIDTH
    colour: str = DEFAULT_COLOUR
    epochs: int = Pretrain().epochs
    batch_size: int = Pretrain().batch_size
    lr: float = Pretrain().lr
    weight_decay: float = 5e-4
    schedule: str = Pretrain().schedule
    seed: int = Pretrain().seed
    method_kwargs: dict = field(default_factory=dict)  # the method's own knobs (e.g. SimCLR's temperature)
    online_probe: bool = False  # train a linear classifier on detached features alongside (scored on val)
    compile: bool = False  # torch.compile the training step (networks, target networks, loss)
    deterministic: bool = False  # torch's deterministic algorithms: bit-exact reruns on one GPU (slower)

    def check(self) -> None:
        checks.numbers(
            width=self.width,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            seed=self.seed,
        )
        if self.colour not in COLOURS:
            raise UserError(f"unknown colour space {self.colour!r}: choose from {', '.join(COLOURS)}")


class PretrainObjective:
    """Indices → uint8 images resident on the device → the method's loss (+ the online probe's)."""

    def __init__(self, method, images: torch.Tensor, class_targets: torch.Tensor | None = None):
        self.module, self.images, self.class_targets = method, images, class_targets

    def loss(self, idx, generator):
        x = to_input(self.images[idx.to(self.images.device)])
        loss, scalars = self.module.loss(x, generator)
        if self.class_targets is not None:
            with torch.no_grad():
                feats = self.module.backbone(x)
            logits = self.module.online_probe(feats.float())
            y = self.class_targets[idx.to(self.class_targets.device)]
            loss = loss + F.cross_entropy(logits, y)
            scalars = {**scalars, "probe_train_acc": (logits.argmax(1) == y).float().mean().detach()}
        return loss, scalars


@torch.no_grad()
def online_probe_accuracy(
    method: nn.Module, images: np.ndarray, targets: np.ndarray, device, batch: int = 512
) -> float:
    was = method.training
    method.eval()
    logits = map_batches(lambda x: method.online_probe(method.backbone(x).float()), images, device, batch)
    method.train(was)
    return float((logits.argmax(1).numpy() == targets).sum()) / max(1, len(images))


def pretrain(
    config: PretrainConfig,
    data: str | Path,
    out: str | Path,
    *,
    progress: bool = True,
    replace: bool = False,
    verify: bool = False,
    on_epoch_cb: Callable[[int, dict], None] | None = None,
    parent_run_id: str | None = None,
    run_name: str | None = None,
    register: bool = True,
    reuse: bool = False,
) -> dict:
    """Pretrain ``config.method`` on the train split of ``data``; writes ``backbone.safetensors`` and
    ``meta.json`` to ``out`` (and ``checkpoint.pt`` after every epoch, to resume from).

    ``method="scratch"`` trains nothing and writes only ``meta.json`` (the backbone's name, width and
    colour space): finetuning from it is training from scratch, so a pipeline can treat the
    baseline like any other initialisation.

    ``on_epoch_cb(epoch, logs)`` sees every epoch's logs (with ``probe_val_acc`` when
    ``config.online_probe``) and may stop training by raising (Optuna's pruning); ``parent_run_id``
    nests the MLflow run under another run, named ``run_name``. ``register`` adds the backbone to
    MLflow's Model Registry as a new version of ``selfsup-{set}-{backbone}-{method}`` (the returned
    meta's ``model_uri``; ``selfsup finetune --init models:/NAME/VERSION`` loads it).

    What ``out`` already holds is never lost by accident: a finished backbone of the same settings is
    returned as it is; a checkpoint of the same settings is resumed; a backbone or checkpoint of other
    settings is an error unless ``replace``, which deletes them first. ``reuse`` (what dvc.yaml passes, its
    outputs being ``persist``) keeps a finished backbone only when the code that trains it is the same too
    (the source hash of this module's import closure) and replaces anything else, so an edit outside that
    code (a command's help text) re-runs the stage in seconds. ``verify`` checks the dataset's sha256
    checksums before training."""
    config.check()
    c = config
    method, width, colour, epochs, batch_size, lr = c.method, c.width, c.colour, c.epochs, c.batch_size, c.lr
    weight_decay, seed, schedule, online = c.weight_decay, c.seed, c.schedule, c.online_probe
    out = checks.output_folder(out)
    tracking.check_store()
    if method == SCRATCH:
        return _scratch_meta(data, out, c.backbone or DEFAULT_BACKBONE, width, colour, replace, verify, reuse)
    METHODS.get(method)  # fail fast on unknown names
    backbone = default_backbone(method, c.backbone or DEFAULT_BACKBONE)
    BACKBONES.get(backbone)
    check_schedule(schedule)
    ds = load_dataset(data, verify=verify)
    ds.require_splits("train", *(["val"] if online else []))
    if online and ds.set_name != "single":
        raise UserError(
            f"the online probe classifies single-object images; {str(data)!r} is a {ds.set_name}-object dataset"
        )
    rank, world = distributed.setup()
    if batch_size % world:
        raise UserError(f"batch size {batch_size} does not split over {world} processes")
    main = rank == 0
    colour = "lab" if backbone.endswith("_split") else colour  # the split backbone is Lab whatever was asked
    # one ladder of records: `chosen` (what was asked, resolved) ⊂ `settings` (what decides the weights: the
    # checkpoint's tag, compared with OUT's) and ⊂ `params` (MLflow's, with the run's facts) ⊂ `meta` (meta.json)
    chosen = {  # what was asked, resolved (backbone variant, colour)
        "method": method,
        "backbone": backbone,
        "width": width,
        "colour": colour,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "schedule": schedule,
        "weight_decay": weight_decay,
        "seed": seed,
    }
    settings = {
        **chosen,
        "dataset_hash": ds.dataset_hash,
        "online_probe": online,
        **{f"method.{k}": v for k, v in c.method_kwargs.items()},
        **({"code": code_hash(__name__)} if reuse else {}),
    }
    finished = _claim_output(out, settings, replace, reuse)
    if finished is not None:
        return finished
    if main:
        out.mkdir(parents=True, exist_ok=True)
    train_idx = torch.from_numpy(ds.split_indices("train"))
    device = distributed.device()
    net = _build_net(c, backbone, colour, len(ds.manifest["classes"]) if online else 0, device)
    # (N, H, W, 3) uint8
    images = resident(ds.images, train_idx.numpy(), device, f"the {len(train_idx)} train images of {str(data)!r}")
    class_targets = (
        torch.from_numpy(ds.labels["class_id"].to_numpy()[train_idx.numpy()]).long().to(device) if online else None
    )
    steps = max(1, len(images) // batch_size)
    cfg = TrainConfig(
        epochs=epochs,
        steps_per_epoch=steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        schedule=schedule,
        compile=c.compile,
        deterministic=c.deterministic,
    )
    params = {
        **chosen,
        "data": str(data),
        "n_images": len(images),
        "device": str(device),
        "world_size": world,
        "compile": c.compile,
        "deterministic": c.deterministic,
        "online_probe": online,
        **{f"method.{k}": v for k, v in c.method_kwargs.items()},
    }
    val_idx = ds.split_indices("val")
    val_images, val_targets = ds.images[val_idx], ds.labels["class_id"].to_numpy()[val_idx]

    def on_epoch(epoch: int, logs: dict) -> dict:
        more = {"probe_val_acc": online_probe_accuracy(net, val_images, val_targets, device)} if online else {}
        if main:
            tracking.log_metrics({**logs, **more}, step=epoch)
            if on_epoch_cb is not None:
                on_epoch_cb(epoch, {**logs, **more})
        return more

    run = (
        tracking.run(
            "pretrain",
            params,
            ds,
            tags={"method": method, "device": str(device), "set": ds.set_name, "variant": ds.variant},
            run_name=run_name or f"pretrain-{method}",
            parent_run_id=parent_run_id,
        )
        if main
        else contextlib.nullcontext()
    )
    with run, step_bar(f"pretrain {method}", progress and main) as bar:
        try:
            history = fit(
                PretrainObjective(net, images, class_targets),
                len(images),
                cfg,
                on_epoch=on_epoch,
                checkpoint=out / CHECKPOINT_FILE,
                resume=True,
                progress=bar,
                checkpoint_tag=settings,
            )
        except Diverged as e:  # no backbone, no checkpoint, no registry version
            raise e.within(f"pretrain {method} → {str(out)!r}") from None
        synced = distributed.in_sync(net)
        meta = {
            **params,
            "dataset_hash": ds.dataset_hash,
            "variant": ds.variant,
            "final_loss": history[-1]["loss"],
            "train_time_s": sum(h["epoch_time_s"] for h in history),
            "images_per_s": history[-1]["images_per_s"],
            "ranks_in_sync": synced,
            **({"code": settings["code"]} if reuse else {}),
        }
        if online:
            meta["probe_val_acc"] = history[-1]["probe_val_acc"]
        if main:
            meta = _save(out, net, meta, ds, register, cost_totals(history))
    distributed.barrier()
    if not synced:
        raise RuntimeError("data-parallel ranks ended with different parameters")
    return meta


def _build_net(c: PretrainConfig, backbone: str, colour: str, online_classes: int, device) -> nn.Module:
    """The method around a fresh backbone (seeded by ``c.seed``), with an online probe of
    ``online_classes`` outputs when that is not 0, on ``device``."""
    torch.manual_seed(c.seed)
    bb = create_backbone(backbone, width=c.width, colour=colour)
    assert bb.colour == colour
    known = set(inspect.signature(METHODS.get(c.method)).parameters) - {"backbone"}
    unknown = sorted(set(c.method_kwargs) - known)
    if unknown:
        raise UserError(
            f"unknown setting {unknown[0]!r} for method {c.method!r}: choose from {', '.join(sorted(known))}"
        )
    net = create_method(c.method, bb, **c.method_kwargs)
    if online_classes:
        net.online_probe = nn.Linear(bb.out_dim, online_classes)
    net = net.to(device).to(memory_format=torch.channels_last)
    return net


def _save(out: Path, net: nn.Module, meta: dict, ds, register: bool, cost: dict) -> dict:
    """Rank 0: the backbone (never half-written), its meta.json, the MLflow metrics and artifacts, and
    with ``register`` a new Model Registry version (its URI in the returned meta)."""
    state = net.backbone.state_dict()
    tmp = out / f"{BACKBONE_FILE}.tmp{os.getpid()}"
    save_file({k: v.contiguous().cpu() for k, v in state.items()}, tmp)
    os.replace(tmp, out / BACKBONE_FILE)
    atomic_write_json(out / META_FILE, meta)
    tracking.log_metrics({"final_loss": meta["final_loss"], "train_time_s": meta["train_time_s"]})
    tracking.log_metrics(cost)
    tracking.log_artifact(out / CHECKPOINT_FILE)
    if not register or not tracking.enabled():
        tracking.log_artifact(out / BACKBONE_FILE)
        tracking.log_artifact(out / META_FILE)
        return meta
    # an imported folder is named by its dataset folder (two imports are two datasets); a render by its set
    name = model_name(ds.path.name if "labels" in ds.manifest else ds.set_name, meta["backbone"], meta["method"])
    lineage = {"dataset_digest": ds.dataset_hash, "variant": ds.variant, "git_commit": git_commit() or "unknown"}
    version = tracking.register_model(name, [out / BACKBONE_FILE, out / META_FILE], lineage)
    return {**meta, "model_uri": f"models:/{name}/{version}"}


def model_name(set_name: str, backbone: str, method: str) -> str:
    """The Model Registry name of backbones pretrained by ``method`` on a ``set_name`` dataset."""
    return f"selfsup-{set_name}-{backbone}-{method}"


def _describe(settings: dict, other: dict) -> str:
    """The first setting where ``other`` differs from ``settings``, as 'NAME A (asked: B)'."""
    for key, want in settings.items():
        if other.get(key) != want:
            return f"{key} {other.get(key)!r} (asked: {want!r})"
    return "none"


def _claim_output(out: Path, settings: dict, replace: bool, reuse: bool = False) -> dict | None:
    """Decide what happens to what ``out`` holds before anything is written there. Returns the
    finished meta when ``out`` already holds this exact pretraining; raises when it holds another
    (with ``reuse``, deletes it instead)."""
    if reuse and not replace:
        try:
            return _claim_output(out, settings, False)
        except UserError:
            return _claim_output(out, settings, True)
    ckpt = out / CHECKPOINT_FILE
    if replace:
        for name in (META_FILE, BACKBONE_FILE, CHECKPOINT_FILE):  # meta first: never a meta without its backbone
            (out / name).unlink(missing_ok=True)
        return None
    meta = read_meta(out, "output folder", "pass --replace to overwrite it, or choose another --out")
    if meta is not None:
        same = all(meta.get(k) == v for k, v in settings.items())
        if same and (settings["method"] == SCRATCH or (out / BACKBONE_FILE).is_file()):
            return {
                **meta,
                "train_time_s": meta.get("train_time_s", 0.0),
                "final_loss": meta.get("final_loss", float("nan")),
                "already_done": True,
            }
        if same:
            raise UserError(
                f"output folder {str(out)!r} holds the {META_FILE} of this pretraining but no {BACKBONE_FILE}: "
                "pass --replace to train it again, or choose another --out"
            )
        what = (
            "a scratch description" if meta.get("method") == SCRATCH else f"a pretrained {meta.get('method')} backbone"
        )
        raise UserError(
            f"output folder {str(out)!r} already holds {what} with other settings ({_describe(settings, meta)}): "
            "pass --replace to overwrite it, or choose another --out"
        )
    if (out / BACKBONE_FILE).is_file():
        raise UserError(
            f"output folder {str(out)!r} holds a {BACKBONE_FILE} without {META_FILE}: "
            "pass --replace to overwrite it, or choose another --out"
        )
    if ckpt.is_file():
        if settings["method"] == SCRATCH:
            raise UserError(
                f"output folder {str(out)!r} holds a pretraining checkpoint: pass --replace to "
                "overwrite it with a scratch description, or choose another --out"
            )
        try:
            # mmap: only the small tag is read here; fit() loads the tensors when it resumes
            tag = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True).get("tag")
        except Exception as e:  # noqa: BLE001  (torch raises many kinds for a damaged file)
            raise UserError(
                f"checkpoint {str(ckpt)!r} is unreadable ({type(e).__name__}): pass --replace to start over"
            ) from None
        if tag != settings:
            raise UserError(
                f"output folder {str(out)!r} holds a checkpoint of other settings "
                f"({_describe(settings, tag or {})}): --resume continues only a checkpoint of the same "
                "settings; pass --replace to start over, or choose another --out"
            )
    return None


def _scratch_meta(
    data, out: Path, backbone: str, width: float, colour: str, replace: bool, verify: bool, reuse: bool = False
) -> dict:
    BACKBONES.get(backbone)
    load_dataset(data, verify=verify)  # a scratch folder is made for a dataset: it must be one
    create_backbone(backbone, width=width, colour=colour)  # checks the backbone's own constraints
    meta = {"method": SCRATCH, "backbone": backbone, "width": width, "colour": colour}
    finished = _claim_output(out, meta, replace, reuse)
    if finished is not None:
        return finished
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / META_FILE, meta)
    return {**meta, "train_time_s": 0.0, "final_loss": float("nan")}
