"""The pretrained-backbone folder, as ``selfsup pretrain --out`` writes it and every later stage reads it.

A folder holds ``meta.json`` (method, backbone, width, colour space, dataset hash, ...) and, unless the
method is ``scratch`` (random initialisation: the description only), ``backbone.safetensors``; an
unfinished pretraining also leaves ``checkpoint.pt`` to resume from.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .defaults import SCRATCH
from .errors import UserError
from .models import create_backbone

BACKBONE_FILE = "backbone.safetensors"
META_FILE = "meta.json"
CHECKPOINT_FILE = "checkpoint.pt"

__all__ = ["BACKBONE_FILE", "CHECKPOINT_FILE", "META_FILE", "SCRATCH", "is_scratch", "load_pretrained", "read_meta"]


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
