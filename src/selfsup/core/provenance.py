"""Where a result came from: code version, file hashes, the code a module can run, atomic writes."""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from selfsup import __version__

_PKG_DIR = Path(__file__).resolve().parents[1]  # src/selfsup


# ---------------------------------------------------------------- the code a module can run


def module_file(dotted: str, package: Path = _PKG_DIR) -> Path | None:
    """selfsup.a.b → its .py file (a package's __init__.py); None outside the package."""
    parts = dotted.split(".")
    if parts[0] != package.name:
        return None
    base = package.joinpath(*parts[1:])
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _walk_runtime(tree: ast.AST):
    """ast.walk, minus the bodies of ``if TYPE_CHECKING:`` (imports for type hints never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            todo += node.orelse
            continue
        todo += ast.iter_child_nodes(node)


def imported_files(tree: ast.AST, path: Path, package: Path = _PKG_DIR) -> set[Path]:
    """Files of ``package`` imported anywhere in ``tree`` (a module's, or one function's, of file
    ``path``), lazy imports inside functions included: any of them may run."""
    rel = path.relative_to(package.parent).with_suffix("").parts
    here = list(rel[:-1])  # the package the relative imports start from (an __init__'s is its own)
    found: set[Path] = set()
    for node in _walk_runtime(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]  # `from .x import y`: y may be a module
        else:
            continue
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
                f = module_file(".".join(parts[:i]), package)
                if f is not None:
                    found.add(f)
    return found


def import_closure(start, package: Path = _PKG_DIR) -> set[Path]:
    """Every file of ``package`` that the files ``start`` can import, transitively (themselves included)."""
    seen: set[Path] = set()
    todo = list(start)
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo += imported_files(ast.parse(f.read_text()), f, package) - seen
    return seen


def code_hash(module: str, package: Path = _PKG_DIR) -> str:
    """sha256 (12 hex digits) of the source of ``module`` and of every package module it can import:
    results cached under it are reused only by the same code."""
    return _code_hash(module, package) if package != _PKG_DIR else _cached_code_hash(module)


@functools.cache
def _cached_code_hash(module: str) -> str:  # the installed package does not change while we run
    return _code_hash(module, _PKG_DIR)


def _code_hash(module: str, package: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(import_closure({module_file(module, package)}, package)):
        h.update(str(f.relative_to(package)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


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
