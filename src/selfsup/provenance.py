"""Where a result came from: code version, file hashes, atomic writes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from . import __version__

_PKG_DIR = Path(__file__).resolve().parent


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the git work tree holding ``path`` (the package by default), or None."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path or _PKG_DIR, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_version() -> str:
    """Package version plus the git commit when running from a checkout."""
    commit = git_commit()
    return f"{__version__}+{commit[:12]}" if commit else __version__


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that a reader never sees it half-written (tmp file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def staged_folder(out: str | Path, last: tuple[str, ...] = ("index.html",)) -> Iterator[Path]:
    """A folder of outputs written as one piece: the block writes into a hidden sibling of ``out``;
    only when it finishes are its entries moved into ``out`` (each by one rename; names in ``last``
    after the rest, so a page never points at files not yet there). If the block fails, ``out`` is
    exactly as it was. Entries of ``out`` the block did not write are left alone."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        yield stage
        out.mkdir(exist_ok=True)
        for entry in sorted(stage.iterdir(), key=lambda e: (e.name in last, e.name)):
            target = out / entry.name
            if entry.is_dir() and target.is_dir():  # a folder: the old one aside, the new one in, the old one gone
                old = Path(tempfile.mkdtemp(prefix=f".{entry.name}.old-", dir=out))
                os.replace(target, old / entry.name)
                os.replace(entry, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(entry, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def sqlite_init_lock(uri: str) -> Iterator[None]:
    """Serialise the first touch of a local SQLite database (``sqlite:///PATH``) across processes:
    independent jobs started together (``--shard``, tuning workers) would otherwise race the schema
    migration of a fresh MLflow or Optuna store. Any other URI: no lock."""
    if not str(uri).startswith("sqlite:///"):
        yield
        return
    import fcntl

    with open(str(uri)[len("sqlite:///") :] + ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
