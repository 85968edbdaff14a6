"""Every numeric setting's limits, in one table, checked the same way for every command and the
library API (each entry point calls :func:`numbers` / :func:`int_list` before it reads or writes
anything), plus the output-folder check the writing commands share.

A bad value is a :class:`~selfsup.core.errors.UserError` naming the setting and the value, e.g.
``invalid width 0.0: must be > 0``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

from selfsup.core.errors import UserError

SEED_MAX = 2**63 - 1  # numpy and torch take seeds as 64-bit integers here

# name → (integer?, lower limit, lower limit included?, upper limit (included)); every value must also be
# finite. The upper limits are far beyond any sensible setting: they stop values that would overflow or
# could never finish (what a command needs of the machine is checked on top: disk, memory)
LIMITS: dict[str, tuple[bool, float, bool, float]] = {
    "count": (True, 1, True, 10**12),
    "workers": (True, 1, True, 1024),
    "resolution": (True, 8, True, 4096),
    "samples": (True, 1, True, 65536),
    "seed": (True, 0, True, SEED_MAX),
    "label budget": (True, 1, True, 10**9),
    "budget": (True, 1, True, 10**9),
    "epochs": (True, 1, True, 10**6),
    "batch size": (True, 1, True, 2**20),
    "steps": (True, 1, True, 10**9),
    "k": (True, 1, True, 10**6),
    "trials": (True, 0, True, 10**6),
    "bootstrap": (True, 0, True, 10**6),
    "stack": (True, 1, True, 1024),
    "width": (False, 0, False, 16),
    "lr": (False, 0, False, 1e3),
    "weight decay": (False, 0, True, 100),
    "confirm-above": (False, 0, True, 1e6),
}


def number(name: str, value) -> None:
    """Check one value against its row of :data:`LIMITS`."""
    integer, low, inclusive, high = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"invalid {name} {value!r}: must be a number")
    if isinstance(value, float) and not math.isfinite(value):  # (an int is finite, however large)
        raise UserError(f"invalid {name} {value}: must be a finite number")
    if integer and isinstance(value, float) and value != int(value):
        raise UserError(f"invalid {name} {value}: must be a whole number")
    if value < low or (value == low and not inclusive):
        bound = f"at least {low:g}" if inclusive else f"> {low:g}"
        raise UserError(f"invalid {name} {value}: must be {bound}")
    if value > high:
        raise UserError(f"invalid {name} {value}: must be at most {high if integer else f'{high:g}'}")


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


def _file_above(path: Path) -> Path | None:
    """The nearest existing parent of ``path`` when it is a file (so ``path`` can never be made), else ``None``."""
    parent = next((p for p in path.parents if p.exists()), None)
    return parent if parent is not None and not parent.is_dir() else None


def output_folder(path: str | Path, what: str = "output folder") -> Path:
    """``path`` may be created as (or already is) a folder: an existing file is an error."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {str(path)!r} is an existing file: give a folder")
    if (parent := _file_above(path)) is not None:
        raise UserError(f"{what} {str(path)!r} is inside {str(parent)!r}, which is a file")
    return path


def store_file(path: str | Path, what: str) -> Path:
    """A file that a URL or storage setting names (an SQLite database, an Optuna journal), checked as
    :func:`output_folder` checks ``--out``: an existing folder there, or a parent that is a file, is an
    error. Unlike ``--out`` its folder must already exist and be writable: the database engine creates
    the file, never its folders, and fails with an error that does not say which path. ``what`` names
    the setting, e.g. ``"Optuna storage 'sqlite:///x.db'"``."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what}: {str(path)!r} is an existing folder: give a file path")
    if (parent := _file_above(path)) is not None:
        raise UserError(f"{what}: {str(path)!r} is inside {str(parent)!r}, which is a file")
    if not path.parent.is_dir():
        raise UserError(
            f"{what}: folder {str(path.parent)!r} does not exist: create it or give a path in an existing folder"
        )
    if not os.access(path.parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.R_OK | os.W_OK)):
        raise UserError(f"{what}: {str(path)!r} is not writable by this user")
    return path


SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def sqlite_file(path: str | Path, what: str) -> Path:
    """:func:`store_file`, and an existing file must be an SQLite database (read, never written)."""
    path = store_file(path, what)
    if path.is_file() and path.stat().st_size:
        with open(path, "rb") as f:
            if f.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                raise UserError(f"{what}: {str(path)!r} is not an SQLite database (an existing file of another kind)")
    return path


def sqlite_path(url: str) -> Path | None:
    """The database file of an ``sqlite://`` URL (``None`` for another scheme or an in-memory database)."""
    if not url.startswith("sqlite:"):
        return None
    rest = url.split("?", 1)[0][len("sqlite:") :]
    if not rest.startswith("///") or rest[3:] in ("", ":memory:"):
        return None
    return Path(rest[3:])


def free_disk(path: str | Path) -> int:
    """Bytes free on the file system that ``path`` (or its nearest existing parent) is on."""
    import shutil

    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def size(n: float) -> str:
    """``1.5e9`` → ``"1.5 GB"`` (decimal units, as ``df -H`` shows)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB", "EB"):
        if abs(n) < 1000 or unit == "EB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.3g} EB"


def fits_on_disk(path: str | Path, need: float, what: str) -> None:
    """Refuse to start writing ``need`` bytes (``what``: e.g. "the 10 images at 64²") under ``path`` when
    its file system has less free, with 5 % to spare."""
    free = free_disk(path)
    if need * 1.05 > free:
        raise UserError(
            f"{what} need {size(need)} of disk in {str(path)!r}, which has {size(free)} free: "
            "ask for fewer or smaller images, or give a folder on a larger disk"
        )


def fits_in_memory(need: float, free: float, where: str, what: str) -> None:
    """Refuse to load ``need`` bytes (``what``) into memory ``where`` (e.g. "cpu") that has ``free``."""
    if need > free:
        raise UserError(
            f"{what} need {size(need)} of memory on {where}, which has {size(free)} available: "
            "train on a smaller dataset or at a lower resolution, or on a machine with more memory"
        )
