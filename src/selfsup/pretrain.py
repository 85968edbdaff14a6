"""Self-supervised pretraining: a method on a dataset's train split, saved as safetensors."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import tracking
from .augment import to_input
from .dataset import load_dataset
from .errors import UserError
from .methods import METHODS, create_method
from .models import BACKBONES, create_backbone
from .progress import step_bar
from .provenance import atomic_write_json
from .train import TrainConfig, default_device, fit

BACKBONE_FILE = "backbone.safetensors"
META_FILE = "meta.json"
CHECKPOINT_FILE = "checkpoint.pt"


class PretrainObjective:
    """Indices → uint8 images resident on the device → the method's loss."""

    def __init__(self, method, images: torch.Tensor):
        self.module, self.images = method, images

    def loss(self, idx, generator):
        x = to_input(self.images[idx.to(self.images.device)])
        return self.module.loss(x, generator)


def pretrain(method: str, data: str | Path, out: str | Path, backbone: str = "resnet9", width: float = 0.25,
             epochs: int = 10, batch_size: int = 128, lr: float = 2e-3, weight_decay: float = 5e-4,
             seed: int = 0, resume: bool = False, progress: bool = True) -> dict:
    """Pretrain ``method`` on the train split of ``data``; writes ``backbone.safetensors`` and
    ``meta.json`` to ``out`` (and ``checkpoint.pt`` after every epoch, for ``resume``)."""
    METHODS.get(method), BACKBONES.get(backbone)  # fail fast on unknown names
    for name, val in (("epochs", epochs), ("batch_size", batch_size)):
        if val < 1:
            raise UserError(f"invalid {name} {val}: must be at least 1")
    if width <= 0:
        raise UserError(f"invalid width {width}: must be positive")
    ds = load_dataset(data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train_idx = torch.from_numpy(ds.split_indices("train"))
    device = default_device()
    torch.manual_seed(seed)
    net = create_method(method, create_backbone(backbone, width=width)).to(device).to(memory_format=torch.channels_last)
    images = torch.from_numpy(ds.images[train_idx.numpy()]).to(device)  # (N, H, W, 3) uint8
    steps = max(1, len(images) // batch_size)
    cfg = TrainConfig(epochs=epochs, steps_per_epoch=steps, batch_size=batch_size, lr=lr,
                      weight_decay=weight_decay, seed=seed)
    params = {"method": method, "backbone": backbone, "width": width, "epochs": epochs, "batch_size": batch_size,
              "lr": lr, "weight_decay": weight_decay, "seed": seed, "data": str(data), "n_images": len(images),
              "device": str(device)}
    with tracking.run("pretrain", params, ds.dataset_hash, tags={"method": method}, run_name=f"pretrain-{method}"), \
            step_bar(f"pretrain {method}", progress) as bar:
        history = fit(PretrainObjective(net, images), len(images), cfg,
                      on_epoch=lambda e, logs: tracking.log_metrics(logs, step=e),
                      checkpoint=out / CHECKPOINT_FILE, resume=resume, progress=bar)
        save_file({k: v.contiguous().cpu() for k, v in net.backbone.state_dict().items()}, out / BACKBONE_FILE)
        meta = {**params, "dataset_hash": ds.dataset_hash, "final_loss": history[-1]["loss"],
                "train_time_s": sum(h["epoch_time_s"] for h in history)}
        atomic_write_json(out / META_FILE, meta)
        tracking.log_metrics({"final_loss": meta["final_loss"], "train_time_s": meta["train_time_s"]})
        tracking.log_artifact(out / BACKBONE_FILE)
        tracking.log_artifact(out / META_FILE)
    return meta


def load_pretrained(init: str | Path, device: torch.device | None = None) -> tuple[torch.nn.Module, dict]:
    """The backbone saved by :func:`pretrain` in folder ``init``, and its meta."""
    init = Path(init)
    if not (init / BACKBONE_FILE).is_file() or not (init / META_FILE).is_file():
        raise UserError(f"checkpoint folder {str(init)!r} has no {BACKBONE_FILE} and {META_FILE} (run `selfsup pretrain`)")
    meta = json.loads((init / META_FILE).read_text())
    net = create_backbone(meta["backbone"], width=meta["width"])
    net.load_state_dict(load_file(init / BACKBONE_FILE))
    return net.to(device or "cpu"), meta
