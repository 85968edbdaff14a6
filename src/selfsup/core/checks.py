"""Every numeric setting's limits, in one table, checked the same way for every command and the
library API (each entry point calls :func:`numbers` / :func:`int_list` before it reads or writes
anything), plus the output-folder check the writing commands share.

A bad value is a :class:`~selfsup.core.errors.UserError` naming the setting and the value, e.g.
``invalid width 0.0: must be > 0``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from selfsup.core.errors import UserError

# name → (integer?, lower limit, lower limit included?); every value must also be finite
LIMITS: dict[str, tuple[bool, float, bool]] = {
    "count": (True, 1, True),
    "workers": (True, 1, True),
    "resolution": (True, 8, True),
    "samples": (True, 1, True),
    "seed": (True, 0, True),
    "label budget": (True, 1, True),
    "budget": (True, 1, True),
    "epochs": (True, 1, True),
    "batch size": (True, 1, True),
    "steps": (True, 1, True),
    "k": (True, 1, True),
    "trials": (True, 0, True),
    "bootstrap": (True, 0, True),
    "stack": (True, 1, True),
    "width": (False, 0, False),
    "lr": (False, 0, False),
    "weight decay": (False, 0, True),
    "confirm-above": (False, 0, True),
}


def number(name: str, value) -> None:
    """Check one value against its row of :data:`LIMITS`."""
    integer, low, inclusive = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"invalid {name} {value!r}: must be a number")
    if not math.isfinite(value):
        raise UserError(f"invalid {name} {value}: must be a finite number")
    if integer and value != int(value):
        raise UserError(f"invalid {name} {value}: must be a whole number")
    if value < low or (value == low and not inclusive):
        bound = f"at least {low:g}" if inclusive else f"> {low:g}"
        raise UserError(f"invalid {name} {value}: must be {bound}")


def numbers(**values) -> None:
    """Check keyword settings (``batch_size=`` is the row ``batch size``); ``None`` means unset."""
    for key, value in values.items():
        if value is not None:
            number(key.replace("_", " ").replace("confirm above", "confirm-above"), value)


def int_list(values: Iterable[int], name: str) -> list[int]:
    """A list of integers for one setting (label budgets, seeds): each within limits, none twice,
    at least one."""
    values = list(values)
    if not values:
        raise UserError(f"give at least one {name}")
    seen: set[int] = set()
    for v in values:
        number(name, v)
        if v in seen:
            raise UserError(f"duplicate {name} {v} in {','.join(map(str, values))}: give each once")
        seen.add(v)
    return values


def parse_int_list(text: str, name: str) -> list[int]:
    """``"100,250"`` → ``[100, 250]``, checked by :func:`int_list`."""
    out = []
    for tok in str(text).split(","):
        tok = tok.strip()
        try:
            out.append(int(tok))
        except ValueError:
            raise UserError(f"invalid {name} {tok!r} in {text!r}: give integers separated by commas") from None
    return int_list(out, name)


def output_folder(path: str | Path, what: str = "output folder") -> Path:
    """``path`` may be created as (or already is) a folder: an existing file is an error."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {str(path)!r} is an existing file: give a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{what} {str(path)!r} is inside {str(parent)!r}, which is a file")
            break
    return path
