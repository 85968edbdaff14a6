"""The dataset folder contract, and sharded, resumable, parallel rendering into it.

A dataset folder holds ``images.npy`` (N, H, W, 3) uint8, ``labels.parquet`` (one row per image)
and ``manifest.json`` (params, seed, code version, counts, sha256 per array); the multi-object set
adds ``segmentation.npy`` (N, H, W) uint8 (0 = background, class_id + 1), ``depth.npy`` (N, H, W)
float16 and ``instances.npy`` (N, H, W) uint8 (0 = background, k = the k-th object of the row). The manifest is
written last: a folder without one is not a dataset. While rendering, finished shards live in
``DIR/.shards/`` and survive a killed run; a rerun with the same parameters renders only the rest.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import checks, tracking
from .assets import Assets, shapenet_index, texture_index
from .errors import UserError
from .provenance import atomic_write_json, code_version, sha256_file
from .scene import SPLITS, Variant, sample_scenes
from .shapes import CLASSES
from .shards import label as shard_label
from .shards import mine as shards_of

SETS = ("single", "multi")
DEFAULT_RESOLUTION = {"single": 64, "multi": 128}
DENSE_ARRAYS = ("segmentation", "depth", "instances")  # multi-object set only
SHARD_SIZE = 32


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
                raise UserError(f"dataset folder {str(self.path)!r} has no {split} images "
                                f"({len(self.labels)} images in all): render more (--count)")


LABEL_COLUMNS = ("split", "class_id", "class_name", "model_id", "pose_bin")  # the contract (SPEC §9)
ARRAY_DTYPES = {"images": np.uint8, "segmentation": np.uint8, "depth": np.float16, "instances": np.uint8}


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
        raise UserError(f"dataset folder {str(path)!r} is unreadable: {str(e).splitlines()[0] if str(e) else e!r}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("params"), dict) or "dataset_hash" not in manifest:
        raise UserError(f"dataset folder {str(path)!r} has a manifest.json without params and dataset_hash")
    for name, arr in {"images": images, **dense}.items():
        if arr.dtype != ARRAY_DTYPES[name]:
            raise UserError(f"dataset folder {str(path)!r}: {name}.npy is {arr.dtype}, the format says "
                            f"{np.dtype(ARRAY_DTYPES[name]).name}")
    if images.ndim != 4 or images.shape[3] != 3:
        raise UserError(f"dataset folder {str(path)!r}: images.npy has shape {images.shape}, the format says (N, H, W, 3)")
    for name, arr in dense.items():
        if arr.shape != images.shape[:3]:
            raise UserError(f"dataset folder {str(path)!r}: {name}.npy has shape {arr.shape}, images {images.shape[:3]}")
    missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
    if missing:
        raise UserError(f"dataset folder {str(path)!r}: labels.parquet lacks column(s) {', '.join(missing)}")
    unknown = sorted(set(labels["split"].astype(str)) - set(SPLITS))
    if unknown:
        raise UserError(f"dataset folder {str(path)!r}: unknown split {unknown[0]!r} in labels.parquet "
                        f"(the format has {', '.join(SPLITS)})")
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
            raise UserError(f"dataset folder {str(path)!r}: {name} has sha256 {got[:16]}…, the manifest says "
                            f"{want[:16]}… (changed since it was rendered)")
    return sha


# ---------------------------------------------------------------- rendering (bpy lives in workers)

_renderer = None


def _init_worker(set_name: str, resolution: int, samples: int, threads: int, assets: Assets) -> None:
    global _renderer
    from . import render  # imports bpy: only ever inside a spawned worker

    cls = {"single": render.SingleObjectRenderer, "multi": render.MultiObjectRenderer}[set_name]
    _renderer = cls(resolution, samples, threads, assets=assets)


def _render_shard(job: tuple[str, list]) -> int:
    path, scenes = job
    outputs = [_renderer.render(s) for s in scenes]
    tmp = path + f".tmp{os.getpid()}.npz"
    np.savez(tmp, **{k: np.stack([o[k] for o in outputs]) for k in outputs[0]})
    os.replace(tmp, path)  # a shard file exists only when complete
    return len(scenes)


def measure_render_worker(set_name: str, resolution: int, samples: int, n: int = 3) -> float:
    """Seconds per image of one render process with every core (run it in a spawned process): the
    hardest variant (TCVL), after one warm-up image. ``selfsup study`` estimates render time from it."""
    _init_worker(set_name, resolution, samples, os.cpu_count() or 1, Assets())
    scenes = sample_scenes(set_name, n + 1, Variant.parse("TCVL"), seed=1)
    _renderer.render(scenes[0])
    t0 = time.perf_counter()
    for s in scenes[1:]:
        _renderer.render(s)
    return (time.perf_counter() - t0) / n


RENDERER_SOURCES = ("scene.py", "shapes.py", "render.py", "assets.py")


def renderer_hash() -> str:
    """Hash of the code that decides pixels and labels: a dataset or shards made by other code are not
    reused (this module's orchestration and messages are left out, so editing them re-renders nothing)."""
    h = hashlib.sha256()
    for name in RENDERER_SOURCES:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:12]


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write_test{os.getpid()}_{uuid.uuid4().hex[:8]}"  # jobs on other machines share OUT
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"output folder {str(out)!r} is not writable: {e.strerror or e}") from None


def render_dataset(out: str | Path, set_name: str = "single", variant: str = "----", count: int = 1000,
                   seed: int = 0, workers: int = 1, resolution: int | None = None, samples: int = 16,
                   progress: bool = True, replace: bool = False, shapenet: str | Path | None = None,
                   textures: str | Path | None = None, shard: tuple[int, int] | None = None) -> dict:
    """Render a dataset folder (resuming a killed run with the same parameters); returns the manifest.

    ``shard=(i, n)`` renders only shard files i, i+n, ... into ``DIR/.shards/`` and returns a summary
    (``{"shard", "rendered", "missing"}``) instead of assembling: n such jobs can run at once on
    machines sharing DIR, then a run without ``shard`` assembles the dataset (rendering what is missing).

    A folder holding a dataset (or an unfinished render) with other parameters is an error, unless
    ``replace``: then its dataset files are deleted first (the pipeline uses this, as DVC keeps the
    folder between runs so that a killed render resumes). ``shapenet`` (a ShapeNetCore v2 folder) and
    ``textures`` (an image folder such as DTD's) replace the procedural meshes and textures."""
    if set_name not in SETS:
        raise UserError(f"unknown set {set_name!r}: choose from {', '.join(SETS)}")
    v = Variant.parse(variant)
    resolution = DEFAULT_RESOLUTION[set_name] if resolution is None else resolution
    checks.numbers(count=count, workers=workers, resolution=resolution, samples=samples, seed=seed)
    if set_name == "multi" and resolution % 8:
        raise UserError(f"invalid resolution {resolution} for the multi set: must be a multiple of 8 "
                        "(dense labels are read on the backbone's 1/8 grid)")
    if shard is not None and replace:
        raise UserError("--replace cannot be combined with --shard: one job would delete the others' shards")
    out = checks.output_folder(out, "dataset folder")
    assets = Assets(shapenet_index(shapenet) if shapenet else None, texture_index(textures) if textures else None)
    params = {"set": set_name, "variant": v.name, "count": count, "seed": seed, "resolution": resolution,
              "samples": samples, "renderer": renderer_hash()}
    if shapenet:
        params["shapenet"] = {"root": str(shapenet), "models": [len(m) for m in assets.meshes]}
    if textures:
        params["textures"] = {"root": str(textures), "images": len(assets.textures)}
    if (out / "manifest.json").is_file():
        done = json.loads((out / "manifest.json").read_text())
        if done.get("params") == params:
            return done
        if not replace:
            raise UserError(f"output folder {str(out)!r} already holds a dataset with other parameters; "
                            "choose another --out, delete it or pass --replace")
        _remove_dataset_files(out)
    _check_writable(out)
    shard_dir = out / ".shards"
    params_file = shard_dir / "params.json"
    if params_file.exists() and json.loads(params_file.read_text()) != params:
        if not replace:
            raise UserError(f"output folder {str(out)!r} holds an unfinished render with other parameters; "
                            "rerun with the same parameters, delete it or pass --replace")
        shutil.rmtree(shard_dir)
    shard_dir.mkdir(exist_ok=True)
    atomic_write_json(params_file, params)

    scenes = sample_scenes(set_name, count, v, seed, assets)
    shards = [(str(shard_dir / f"shard_{k:05d}.npz"), scenes[i:i + SHARD_SIZE])
              for k, i in enumerate(range(0, count, SHARD_SIZE))]
    mine = shards_of(shards, shard)
    todo = [job for job in mine if not os.path.exists(job[0])]
    run_name = f"render-{set_name}-{v.name}" + (f"-shard{shard[0]}of{shard[1]}" if shard else "")
    with tracking.run("render", {**params, "workers": workers, "out": str(out), "shard": shard_label(shard)},
                      run_name=run_name):
        t0 = time.perf_counter()
        _run_shards(todo, sum(len(j[1]) for j in mine), sum(len(j[1]) for j in mine) - sum(len(j[1]) for j in todo),
                    workers, set_name, resolution, samples, assets, progress)
        rendered = sum(len(j[1]) for j in todo)
        seconds = time.perf_counter() - t0
        if shard is not None:
            tracking.log_metrics({"images_rendered": rendered, "render_time_s": seconds})
            missing = sum(not os.path.exists(path) for path, _ in shards)
            return {"shard": shard_label(shard), "rendered": rendered, "missing": missing}
        manifest = _assemble(out, shards, scenes, params)
        sheet = write_contact_sheet(out)
        shutil.rmtree(shard_dir)
        tracking.set_tags({"dataset_hash": manifest["dataset_hash"]})
        tracking.log_metrics({"images_rendered": rendered, "render_time_s": seconds,
                              "images_per_s": rendered / seconds if seconds > 0 else 0.0})
        tracking.log_artifact(out / "manifest.json")
        tracking.log_artifact(sheet)
    return manifest


def _run_shards(todo, total: int, done: int, workers: int, set_name: str, resolution: int, samples: int,
                assets: Assets, progress: bool) -> None:
    if not todo:
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")  # never fork a process that may hold bpy
    cols = (TextColumn("render"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]} img/s"),
            TextColumn("ETA"), TimeRemainingColumn())
    pool = ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx, initializer=_init_worker,
                               initargs=(set_name, resolution, samples, threads, assets))
    try:
        with Progress(*cols, disable=not progress) as bar:
            task = bar.add_task("render", total=total, completed=done, rate="-")
            t0, n = time.perf_counter(), 0
            for fut in as_completed([pool.submit(_render_shard, job) for job in todo]):
                n += fut.result()
                bar.update(task, advance=fut.result(), rate=f"{n / (time.perf_counter() - t0):.1f}")
    except BrokenProcessPool:
        raise UserError("a render worker died (is Blender's bpy installed with its system libraries? "
                        "run scripts/setup.sh); finished shards are kept, rerun to resume") from None
    finally:
        pool.shutdown(cancel_futures=True)


def _assemble(out: Path, shards, scenes: list, params: dict) -> dict:
    """Concatenate the shards into one memory-mappable ``.npy`` per array, then labels, then the manifest."""
    with np.load(shards[0][0]) as first:
        specs = {k: (first[k].dtype, first[k].shape[1:]) for k in first.files}
    files = {k: out / ("images.npy" if k == "image" else f"{k}.npy") for k in specs}
    arrays = {k: np.lib.format.open_memmap(str(files[k]) + ".tmp", mode="w+", dtype=dt, shape=(len(scenes), *shape))
              for k, (dt, shape) in specs.items()}
    i = 0
    for path, chunk in shards:
        with np.load(path) as shard:
            for k, arr in arrays.items():
                arr[i:i + len(chunk)] = shard[k]
        i += len(chunk)
    for arr in arrays.values():
        arr.flush()
    del arrays
    for f in files.values():
        os.replace(str(f) + ".tmp", f)

    labels = pd.DataFrame([s.label_row() for s in scenes])
    labels["split"] = pd.Categorical(labels["split"], categories=list(SPLITS))
    tmp_labels = out / "labels.parquet.tmp"
    labels.to_parquet(tmp_labels, index=False)
    os.replace(tmp_labels, out / "labels.parquet")

    sha = {f.name: sha256_file(f) for f in [*files.values(), out / "labels.parquet"]}
    per_object = labels.explode(["class_name", "pose_bin"]) if params["set"] == "multi" else labels
    counts = {"images": len(scenes), **{f"split_{s}": int((labels["split"] == s).sum()) for s in SPLITS},
              "classes": {c: int((per_object["class_name"] == c).sum()) for c in CLASSES},
              "pose_bins": {str(b): int((per_object["pose_bin"] == b).sum()) for b in range(5)}}
    manifest = {
        "params": params, "seed": params["seed"], "code_version": code_version(), "counts": counts,
        "sha256": sha, "dataset_hash": hashlib.sha256(json.dumps(sha, sort_keys=True).encode()).hexdigest()[:16],
        "image_shape": [len(scenes), *specs["image"][1]], "arrays": sorted(f.name for f in files.values()),
        "classes": list(CLASSES),
    }
    atomic_write_json(out / "manifest.json", manifest)  # last: its presence marks the dataset finished
    return manifest


DATASET_FILES = ("manifest.json", "images.npy", "labels.parquet", "contact_sheet.png",
                 *(f"{k}.npy" for k in DENSE_ARRAYS))


def _remove_dataset_files(out: Path) -> None:
    """Delete a dataset's own files (manifest first, so it never looks finished); nothing else."""
    for name in DATASET_FILES:
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / ".shards", ignore_errors=True)


def write_contact_sheet(path: Path, per_class: int = 8) -> Path:
    """``contact_sheet.png`` beside the arrays. Single set: one row per class, ``per_class`` images
    each. Multi set: rows of images, each above its segmentation (one colour per class)."""
    from PIL import Image

    images = np.load(path / "images.npy", mmap_mode="r")
    h, w = images.shape[1:3]
    if (path / "segmentation.npy").is_file():
        seg = np.load(path / "segmentation.npy", mmap_mode="r")
        palette = np.array([[0, 0, 0]] + [[int(255 * c) for c in colorsys.hsv_to_rgb(k / 10, 0.8, 1.0)]
                                          for k in range(len(CLASSES))], np.uint8)
        n = min(len(images), per_class * 2)
        tiles = [np.concatenate([images[i], palette[seg[i]]], 0) for i in range(n)]
        tiles += [np.zeros_like(tiles[0])] * (-n % per_class)
        rows = [np.concatenate(tiles[r:r + per_class], 1) for r in range(0, len(tiles), per_class)]
        sheet = np.concatenate(rows, 0)
    else:
        labels = pd.read_parquet(path / "labels.parquet", columns=["class_id"])
        sheet = np.full((len(CLASSES) * h, per_class * w, 3), 255, np.uint8)
        for c in range(len(CLASSES)):
            for j, i in enumerate(np.flatnonzero(labels.class_id.to_numpy() == c)[:per_class]):
                sheet[c * h:(c + 1) * h, j * w:(j + 1) * w] = images[i]
    Image.fromarray(sheet).save(path / "contact_sheet.png")
    return path / "contact_sheet.png"
