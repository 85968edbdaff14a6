"""The dataset folder contract: what a dataset folder holds, how it is written and read.

A dataset folder holds ``images.npy`` (N, H, W, 3) uint8, ``labels.parquet`` (one row per image)
and ``manifest.json`` (params, seed, code version, counts, sha256 per array); the multi-object set
adds ``segmentation.npy`` (N, H, W) uint8 (0 = background, class_id + 1), ``depth.npy`` (N, H, W)
float16, ``instances.npy`` (N, H, W) uint8 (0 = background, k = the k-th object of the row) and
``normals.npy`` (N, H, W, 3) float16 (unit surface normals in camera axes: x right, y up, z towards the
camera; from Cycles' normal pass). The manifest is
written last: a folder without one is not a dataset. Rendering into it (processes, shards, resuming)
is :mod:`selfsup.data.render`'s job; nothing here imports the renderer or starts a process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from selfsup.core.errors import UserError
from selfsup.core.provenance import atomic_write_json, code_version, sha256_file
from selfsup.data.scene import SPLITS
from selfsup.data.shapes import CLASSES

SETS = ("single", "multi")
DEFAULT_RESOLUTION = {"single": 64, "multi": 128}
DENSE_ARRAYS = ("segmentation", "depth", "instances", "normals")  # multi-object set only


@dataclass
class Dataset:
    """A loaded dataset folder; ``images`` and ``dense`` arrays are memory-mapped."""

    path: Path
    images: np.ndarray
    labels: pd.DataFrame
    manifest: dict
    dense: dict[str, np.ndarray]  # segmentation, depth, instances (multi-object set); empty otherwise

    @property
    def set_name(self) -> str:
        return self.manifest["params"]["set"]

    @property
    def variant(self) -> str:
        return self.manifest["params"]["variant"]

    @property
    def dataset_hash(self) -> str:
        return self.manifest["dataset_hash"]

    def split_indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.labels["split"].to_numpy() == split)

    def require_splits(self, *splits: str) -> None:
        """Every split named must hold images (checked before any training starts)."""
        for split in splits:
            if not len(self.split_indices(split)):
                raise UserError(
                    f"dataset folder {str(self.path)!r} has no {split} images "
                    f"({len(self.labels)} images in all): render more (--count)"
                )


LABEL_COLUMNS = ("split", "class_id", "class_name", "model_id", "pose_bin")  # the contract (SPEC §9)
ARRAY_DTYPES = {
    "images": np.uint8,
    "segmentation": np.uint8,
    "depth": np.float16,
    "instances": np.uint8,
    "normals": np.float16,
}
ARRAY_CHANNELS = {"normals": 3}  # dense arrays with a trailing channel axis


def load_dataset(path: str | Path, verify: bool = False) -> Dataset:
    """Open a rendered dataset folder; a clear error when it is missing, incomplete or not in the
    format (array dtypes and shapes, label columns, split names). ``verify`` also checks every file
    against the manifest's sha256 (reads every byte: seconds per GB)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"dataset folder {str(path)!r} does not exist (render it with `selfsup render`)")
    if not (path / "manifest.json").is_file():
        raise UserError(f"dataset folder {str(path)!r} has no manifest.json: not a finished render")
    try:
        manifest = json.loads((path / "manifest.json").read_text())
        images = np.load(path / "images.npy", mmap_mode="r")
        labels = pd.read_parquet(path / "labels.parquet")
        dense = {k: np.load(path / f"{k}.npy", mmap_mode="r") for k in DENSE_ARRAYS if (path / f"{k}.npy").is_file()}
    except (OSError, ValueError) as e:
        raise UserError(
            f"dataset folder {str(path)!r} is unreadable: {str(e).splitlines()[0] if str(e) else e!r}"
        ) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("params"), dict) or "dataset_hash" not in manifest:
        raise UserError(f"dataset folder {str(path)!r} has a manifest.json without params and dataset_hash")
    for name, arr in {"images": images, **dense}.items():
        if arr.dtype != ARRAY_DTYPES[name]:
            raise UserError(
                f"dataset folder {str(path)!r}: {name}.npy is {arr.dtype}, the format says "
                f"{np.dtype(ARRAY_DTYPES[name]).name}"
            )
    if images.ndim != 4 or images.shape[3] != 3:
        raise UserError(
            f"dataset folder {str(path)!r}: images.npy has shape {images.shape}, the format says (N, H, W, 3)"
        )
    for name, arr in dense.items():
        want = (*images.shape[:3], ARRAY_CHANNELS[name]) if name in ARRAY_CHANNELS else images.shape[:3]
        if arr.shape != want:
            raise UserError(f"dataset folder {str(path)!r}: {name}.npy has shape {arr.shape}, the format says {want}")
    missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
    if missing:
        raise UserError(f"dataset folder {str(path)!r}: labels.parquet lacks column(s) {', '.join(missing)}")
    unknown = sorted(set(labels["split"].astype(str)) - set(SPLITS))
    if unknown:
        raise UserError(
            f"dataset folder {str(path)!r}: unknown split {unknown[0]!r} in labels.parquet "
            f"(the format has {', '.join(SPLITS)})"
        )
    if any(len(a) != len(labels) for a in (images, *dense.values())):
        raise UserError(f"dataset folder {str(path)!r} is corrupt: {len(images)} images but {len(labels)} labels")
    if verify:
        verify_dataset(path, manifest)
    return Dataset(path, images, labels, manifest, dense)


def verify_dataset(path: str | Path, manifest: dict | None = None) -> dict[str, str]:
    """Check every file the manifest lists against its sha256; returns them. A mismatch, or a
    manifest without checksums, is an error naming the file."""
    path = Path(path)
    manifest = manifest if manifest is not None else json.loads((path / "manifest.json").read_text())
    sha = manifest.get("sha256")
    if not isinstance(sha, dict) or not sha:
        raise UserError(f"dataset folder {str(path)!r}: the manifest lists no sha256 checksums")
    for name, want in sorted(sha.items()):
        f = path / name
        if not f.is_file():
            raise UserError(f"dataset folder {str(path)!r}: {name} is listed in the manifest but missing")
        got = sha256_file(f)
        if got != want:
            raise UserError(
                f"dataset folder {str(path)!r}: {name} has sha256 {got[:16]}…, the manifest says "
                f"{want[:16]}… (changed since it was rendered)"
            )
    return sha


def content_hash(sha: dict[str, str], label_rows: list[dict]) -> str:
    """The dataset hash: the arrays' sha256 and the labels' *content* (canonical JSON of the rows),
    not labels.parquet's bytes, which embed the writing pyarrow's and pandas' versions."""
    arrays = {name: digest for name, digest in sha.items() if name.endswith(".npy")}
    labels = hashlib.sha256(json.dumps(label_rows, sort_keys=True, default=_plain).encode()).hexdigest()
    return hashlib.sha256(json.dumps({**arrays, "labels": labels}, sort_keys=True).encode()).hexdigest()[:16]


def _plain(value):
    """numpy scalars and arrays in label rows → plain JSON values."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def write_dataset(
    out: Path,
    chunks: Iterable[dict[str, np.ndarray]],
    label_rows: list[dict],
    params: dict,
    classes: Sequence[str] = CLASSES,
    extra: dict | None = None,
) -> dict:
    """Write a dataset folder from ``chunks`` (dicts of arrays, ``image`` and the dense arrays, in image
    order, together ``len(label_rows)`` images): one memory-mappable ``.npy`` per array, then
    ``labels.parquet``, then ``manifest.json`` (last: its presence marks the dataset finished).
    ``classes``: the class names, in class-id order (the renders' ten by default); ``extra``: more
    manifest entries (an import's source files)."""
    chunks = iter(chunks)
    first = next(chunks)
    specs = {k: (v.dtype, v.shape[1:]) for k, v in first.items()}
    n = len(label_rows)
    files = {k: out / ("images.npy" if k == "image" else f"{k}.npy") for k in specs}
    arrays = {
        k: np.lib.format.open_memmap(str(files[k]) + ".tmp", mode="w+", dtype=dt, shape=(n, *shape))
        for k, (dt, shape) in specs.items()
    }
    i = 0
    for chunk in (first, *chunks):
        m = len(chunk["image"])
        for k, arr in arrays.items():
            arr[i : i + m] = chunk[k]
        i += m
    for arr in arrays.values():
        arr.flush()
    del arrays
    for f in files.values():
        os.replace(str(f) + ".tmp", f)

    labels = pd.DataFrame(label_rows)
    labels["split"] = pd.Categorical(labels["split"], categories=list(SPLITS))
    tmp_labels = out / "labels.parquet.tmp"
    labels.to_parquet(tmp_labels, index=False)
    os.replace(tmp_labels, out / "labels.parquet")

    sha = {f.name: sha256_file(f) for f in [*files.values(), out / "labels.parquet"]}
    per_object = labels.explode(["class_name", "pose_bin"]) if params["set"] == "multi" else labels
    counts = {
        "images": n,
        **{f"split_{s}": int((labels["split"] == s).sum()) for s in SPLITS},
        "classes": {c: int((per_object["class_name"] == c).sum()) for c in classes},
        "pose_bins": {str(b): int((per_object["pose_bin"] == b).sum()) for b in range(5)},
    }
    manifest = {
        "params": params,
        "seed": params["seed"],
        "code_version": code_version(),
        "counts": counts,
        "sha256": sha,
        "dataset_hash": content_hash(sha, label_rows),
        "image_shape": [n, *specs["image"][1]],
        "arrays": sorted(f.name for f in files.values()),
        "classes": list(classes),
        **(extra or {}),
    }
    atomic_write_json(out / "manifest.json", manifest)  # last: its presence marks the dataset finished
    return manifest


DATASET_FILES = (
    "manifest.json",
    "images.npy",
    "labels.parquet",
    "contact_sheet.png",
    *(f"{k}.npy" for k in DENSE_ARRAYS),
)


def remove_dataset_files(out: Path) -> None:
    """Delete a dataset's own files (manifest first, so it never looks finished); nothing else."""
    for name in DATASET_FILES:
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / ".shards", ignore_errors=True)
