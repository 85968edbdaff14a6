"""``best_params.json``: what ``selfsup tune`` writes and ``finetune`` / ``pretrain --params-file`` read.

``{"study": NAME, "trials": N, "trial_states": {...}, "metric": "val_...", "best_value": X,
"params": {"lr": ..., "weight_decay": ..., "schedule": ..., METHOD_KNOB: ...}}``; ``trial_states`` counts
the trials of each Optuna state and ``diverged``, the pruned trials whose training diverged.
"""

from __future__ import annotations

import json
from pathlib import Path

from selfsup.core.errors import UserError
from selfsup.core.provenance import atomic_write_json

BEST_FILE = "best_params.json"
OPTIMISER_KEYS = ("lr", "weight_decay", "schedule")  # searched for every method and for finetuning


def write_best(out: Path, name: str, trials: int, value, params: dict, states: dict, metric: str = "") -> dict:
    best = {
        "study": name,
        "trials": trials,
        "trial_states": states,
        "metric": f"val_{metric}" if metric else "",
        "best_value": value,
        "params": params,
    }
    atomic_write_json(out / BEST_FILE, best)
    return best


def _read(path: str | Path) -> tuple[dict, dict]:
    """(lr, weight_decay, schedule) and the other params (a method's knobs) of a best_params.json."""
    path = Path(path)
    try:
        params = dict(json.loads(path.read_text())["params"])
        best = {
            "lr": float(params.pop("lr")),
            "weight_decay": float(params.pop("weight_decay")),
            "schedule": str(params.pop("schedule")),
        }
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"cannot read tuned parameters from {str(path)!r}: {e!r}") from None
    return best, params


def read_best(path: str | Path) -> dict:
    """The finetuning lr, weight_decay and schedule of a ``best_params.json`` (``FinetuneConfig`` fields)."""
    return _read(path)[0]


def read_pretrain_best(path: str | Path) -> dict:
    """The ``PretrainConfig`` fields in a ``best_params.json`` from ``tune --pretrain``: lr,
    weight_decay, schedule and ``method_kwargs`` (the method's knobs)."""
    best, knobs = _read(path)
    return {**best, "method_kwargs": knobs}
