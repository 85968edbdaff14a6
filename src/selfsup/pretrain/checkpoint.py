"""The pretrained-backbone folder, as ``selfsup pretrain --out`` writes it and every later stage reads it.

A folder holds ``meta.json`` (method, backbone, width, colour space, dataset hash, ...) and, unless the
method is ``scratch`` (random initialisation: the description only), ``backbone.safetensors``; an
unfinished pretraining also leaves ``checkpoint.pt`` to resume from. ``selfsup pretrain`` also
registers every backbone in MLflow's Model Registry; :func:`resolve_init` turns a
``models:/NAME/VERSION`` URI back into such a folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

from selfsup.core.defaults import SCRATCH
from selfsup.core.errors import UserError
from selfsup.models import create_backbone

BACKBONE_FILE = "backbone.safetensors"
META_FILE = "meta.json"
CHECKPOINT_FILE = "checkpoint.pt"

MODEL_URI = "models:/"
__all__ = [
    "BACKBONE_FILE",
    "CHECKPOINT_FILE",
    "META_FILE",
    "MODEL_URI",
    "SCRATCH",
    "is_scratch",
    "load_pretrained",
    "read_meta",
    "resolve_init",
]


def model_cache() -> Path:
    """Where registered backbones are downloaded to (``$XDG_CACHE_HOME/selfsup/models``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "selfsup" / "models"


def resolve_init(init: str | Path | None) -> str | Path | None:
    """``init`` as a checkpoint folder: a ``models:/NAME/VERSION`` URI of the current MLflow tracking
    store is downloaded once into :func:`model_cache` (a version's files never change); anything else
    is returned as it is."""
    if init is None or not str(init).startswith(MODEL_URI):
        return init
    uri = str(init)
    name, _, version = uri[len(MODEL_URI) :].partition("/")
    if not name or not version.isdigit():
        raise UserError(f"--init {uri!r}: give a registered model as models:/NAME/VERSION (VERSION a number)")
    from selfsup.core import tracking

    key = hashlib.sha256(f"{tracking.tracking_uri()} {uri}".encode()).hexdigest()[:12]
    folder = model_cache() / f"{name}-v{version}-{key}"
    if not (folder / META_FILE).is_file():
        tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        tracking.download_model(uri, str(tmp))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)  # a folder in the cache is always a whole download
    return folder


def read_meta(folder: Path, role: str = "checkpoint folder", advice: str = "") -> dict | None:
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
    meta = read_meta(Path(init)) if Path(init).is_dir() else None
    return meta is not None and meta.get("method") == SCRATCH


def load_pretrained(init: str | Path, device: torch.device | None = None) -> tuple[torch.nn.Module | None, dict]:
    """The backbone saved by ``selfsup pretrain`` in folder ``init``, and its meta (``None`` and the meta
    for a ``scratch`` folder). A damaged folder (bad JSON, a file that is not safetensors, weights of
    another shape) is a one-line error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    init = Path(init)
    if not init.is_dir():
        raise UserError(
            f"checkpoint folder {str(init)!r} does not exist"
            if not init.exists()
            else f"--init {str(init)!r} is a file: give the folder `selfsup pretrain --out` wrote"
        )
    meta = read_meta(init)
    if meta is not None and meta.get("method") == SCRATCH:
        return None, meta
    if meta is None or not (init / BACKBONE_FILE).is_file():
        raise UserError(
            f"checkpoint folder {str(init)!r} has no {BACKBONE_FILE} and {META_FILE} (run `selfsup pretrain`)"
        )
    try:
        net = create_backbone(meta["backbone"], width=float(meta["width"]), colour=meta.get("colour", "rgb"))
    except (TypeError, ValueError) as e:
        raise UserError(f"checkpoint folder {str(init)!r}: {META_FILE} describes no backbone ({e})") from None
    try:
        state = load_file(init / BACKBONE_FILE)
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(
            f"checkpoint folder {str(init)!r}: {BACKBONE_FILE} is not a readable safetensors file "
            f"({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        first = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e))
        raise UserError(
            f"checkpoint folder {str(init)!r}: the weights do not fit the {meta['backbone']} of width "
            f"{meta['width']} that {META_FILE} describes ({first.rstrip('.')})"
        ) from None
    return net.to(device or "cpu"), meta
