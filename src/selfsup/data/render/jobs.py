"""Rendering a dataset folder: scenes → shards rendered by spawned Blender workers → the dataset.

The scenes are sampled up front (:mod:`selfsup.data.scene`), cut into shards of ``SHARD_SIZE`` images and
rendered by worker processes (spawned, never forked: each imports ``bpy`` through
:mod:`selfsup.data.render.blender`). Finished shards live in ``DIR/.shards/`` and survive a killed run; a
rerun with the same parameters renders only the rest, then :func:`selfsup.data.dataset.write_dataset`
assembles the folder.
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
from pathlib import Path

import numpy as np
import pandas as pd

from selfsup.core import checks, tracking
from selfsup.core.errors import UserError
from selfsup.core.provenance import atomic_write_json, import_closure
from selfsup.data.assets import Assets, shapenet_index, texture_index
from selfsup.data.dataset import (
    ARRAY_CHANNELS,
    ARRAY_DTYPES,
    DEFAULT_RESOLUTION,
    SETS,
    load_dataset,
    remove_dataset_files,
    write_dataset,
)
from selfsup.data.render.quality import DEVICES, Quality
from selfsup.data.scene import Variant, sample_scenes
from selfsup.data.shapes import CLASSES
from selfsup.data.shards import label as shard_label
from selfsup.data.shards import mine as shards_of

SHARD_SIZE = 32  # images per shard file: the unit of resuming and of --shard jobs


_renderer = None


def _init_worker(
    set_name: str, resolution: int, quality: Quality, threads: int, assets: Assets, gpu: bool = False
) -> None:
    global _renderer
    from selfsup.data.render import blender  # imports bpy: only ever inside a spawned worker

    _renderer = blender.RENDERERS[set_name](resolution, quality, threads, assets=assets, gpu=gpu)


def _gpu_backend() -> str | None:
    from selfsup.data.render import blender

    return blender.enable_gpu()


def gpu_backend() -> str | None:
    """The GPU backend Blender's Cycles would use on this machine (OPTIX, CUDA, ...), or None; asked in
    a spawned process, so that this one never imports ``bpy``."""
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_gpu_backend).result()


def _render_shard(job: tuple[str, list]) -> int:
    path, scenes = job
    outputs = [_renderer.render(s) for s in scenes]
    tmp = path + f".tmp{os.getpid()}.npz"
    np.savez(tmp, **{k: np.stack([o[k] for o in outputs]) for k in outputs[0]})
    os.replace(tmp, path)  # a shard file exists only when complete
    return len(scenes)


def measure_render_worker(set_name: str, resolution: int, quality: Quality | int, n: int = 3) -> float:
    """Seconds per image of one render process with every core (run it in a spawned process): the
    hardest variant (TCVL), after one warm-up image. ``selfsup study`` estimates render time from it."""
    quality = quality if isinstance(quality, Quality) else Quality(quality)
    _init_worker(set_name, resolution, quality, os.cpu_count() or 1, Assets())
    scenes = sample_scenes(set_name, n + 1, Variant.parse("TCVL"), seed=1)
    _renderer.render(scenes[0])
    t0 = time.perf_counter()
    for s in scenes[1:]:
        _renderer.render(s)
    return (time.perf_counter() - t0) / n


def renderer_hash() -> str:
    """Hash of the code that decides pixels and labels (the Blender worker's module and its import closure:
    scenes, shapes, assets, quality): a dataset or shards made by other code are not reused (this module's
    orchestration and messages are left out, so editing them re-renders nothing)."""
    pkg = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for f in sorted(import_closure({Path(__file__).resolve().with_name("blender.py")}, pkg)):
        h.update(str(f.relative_to(pkg)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        test_file = out / f".write_test{os.getpid()}_{uuid.uuid4().hex[:8]}"  # jobs on other machines share OUT
        test_file.write_text("")
        test_file.unlink()
    except OSError as e:
        raise UserError(f"output folder {str(out)!r} is not writable: {e.strerror or e}") from None


def render_dataset(
    out: str | Path,
    set_name: str = "single",
    variant: str = "----",
    count: int = 1000,
    seed: int = 0,
    workers: int = 1,
    resolution: int | None = None,
    samples: int = 16,
    progress: bool = True,
    replace: bool = False,
    shapenet: str | Path | None = None,
    textures: str | Path | None = None,
    shard: tuple[int, int] | None = None,
    denoise: str = "none",
    device: str = "cpu",
) -> dict:
    """Render a dataset folder (resuming a killed run with the same parameters); returns the manifest.

    ``shard=(i, n)`` renders only shard files i, i+n, ... into ``DIR/.shards/`` and returns a summary
    (``{"shard", "rendered", "missing"}``) instead of assembling: n such jobs can run at once on
    machines sharing DIR, then a run without ``shard`` assembles the dataset (rendering what is missing).

    A folder holding a dataset (or an unfinished render) with other parameters is an error, unless
    ``replace``: then its dataset files are deleted first (the pipeline uses this, as DVC keeps the
    folder between runs so that a killed render resumes). ``shapenet`` (a ShapeNetCore v2 folder) and
    ``textures`` (an image folder such as DTD's) replace the procedural meshes and textures.
    ``denoise`` runs OpenImageDenoise (``fast`` / ``accurate`` prefilter) on the ``samples``;
    ``device="gpu"`` renders with Cycles on every GPU Blender finds (an error when there is none)."""
    if set_name not in SETS:
        raise UserError(f"unknown set {set_name!r}: choose from {', '.join(SETS)}")
    v = Variant.parse(variant)
    resolution = DEFAULT_RESOLUTION[set_name] if resolution is None else resolution
    checks.numbers(count=count, workers=workers, resolution=resolution, samples=samples, seed=seed)
    quality = Quality(samples, denoise).check()
    if device not in DEVICES:
        raise UserError(f"unknown device {device!r}: choose from {', '.join(DEVICES)}")
    if device == "gpu" and gpu_backend() is None:
        raise UserError("--device gpu: Blender finds no GPU here (OptiX, CUDA, HIP or oneAPI); use --device cpu")
    if set_name == "multi" and resolution % 8:
        raise UserError(
            f"invalid resolution {resolution} for the multi set: must be a multiple of 8 "
            "(dense labels are read on the backbone's 1/8 grid)"
        )
    if shard is not None and replace:
        raise UserError("--replace cannot be combined with --shard: one job would delete the others' shards")
    out = checks.output_folder(out, "dataset folder")
    tracking.check_store()
    if not (out / "manifest.json").is_file():  # (a finished render is returned as it is, below)
        checks.fits_on_disk(
            out, disk_needed(set_name, count, resolution), f"{count} {set_name}-set images at {resolution}²"
        )
    assets = Assets(shapenet_index(shapenet) if shapenet else None, texture_index(textures) if textures else None)
    params = {
        "set": set_name,
        "variant": v.name,
        "count": count,
        "seed": seed,
        "resolution": resolution,
        **quality.params(),  # samples, and any other setting that is not the default
        **({"device": device} if device != "cpu" else {}),  # GPU kernels round differently
        "renderer": renderer_hash(),
    }
    if shapenet:
        params["shapenet"] = {"root": str(shapenet), "models": [len(m) for m in assets.meshes]}
    if textures:
        params["textures"] = {"root": str(textures), "images": len(assets.textures)}
    if (out / "manifest.json").is_file():
        done = json.loads((out / "manifest.json").read_text())
        if done.get("params") == params:
            return done
        if not replace:
            raise UserError(
                f"output folder {str(out)!r} already holds a dataset with other parameters; "
                "choose another --out, delete it or pass --replace"
            )
        remove_dataset_files(out)
    _check_writable(out)
    shard_dir = out / ".shards"
    params_file = shard_dir / "params.json"
    if params_file.exists() and json.loads(params_file.read_text()) != params:
        if not replace:
            raise UserError(
                f"output folder {str(out)!r} holds an unfinished render with other parameters; "
                "rerun with the same parameters, delete it or pass --replace"
            )
        shutil.rmtree(shard_dir)
    shard_dir.mkdir(exist_ok=True)
    atomic_write_json(params_file, params)

    scenes = sample_scenes(set_name, count, v, seed, assets)
    shards = [
        (str(shard_dir / f"shard_{k:05d}.npz"), scenes[i : i + SHARD_SIZE])
        for k, i in enumerate(range(0, count, SHARD_SIZE))
    ]
    mine = shards_of(shards, shard)
    todo = [job for job in mine if not os.path.exists(job[0])]
    run_name = f"render-{set_name}-{v.name}" + (f"-shard{shard[0]}of{shard[1]}" if shard else "")
    with tracking.run(
        "render", {**params, "workers": workers, "out": str(out), "shard": shard_label(shard)}, run_name=run_name
    ):
        t0 = time.perf_counter()
        _run_shards(
            todo,
            sum(len(j[1]) for j in mine),
            sum(len(j[1]) for j in mine) - sum(len(j[1]) for j in todo),
            workers,
            set_name,
            resolution,
            quality,
            device == "gpu",
            assets,
            progress,
        )
        rendered = sum(len(j[1]) for j in todo)
        seconds = time.perf_counter() - t0
        if shard is not None:
            tracking.log_metrics({"images_rendered": rendered, "render_time_s": seconds})
            missing = sum(not os.path.exists(path) for path, _ in shards)
            return {"shard": shard_label(shard), "rendered": rendered, "missing": missing}
        manifest = write_dataset(out, _shard_arrays(shards), [s.label_row() for s in scenes], params)
        tracking.log_dataset(load_dataset(out), context="rendered")
        sheet = write_contact_sheet(out)
        shutil.rmtree(shard_dir)
        tracking.set_tags({"dataset_hash": manifest["dataset_hash"]})
        tracking.log_metrics(
            {
                "images_rendered": rendered,
                "render_time_s": seconds,
                "images_per_s": rendered / seconds if seconds > 0 else 0.0,
            }
        )
        tracking.log_artifact(out / "manifest.json")
        tracking.log_artifact(sheet)
    return manifest


def _run_shards(
    todo,
    total: int,
    done: int,
    workers: int,
    set_name: str,
    resolution: int,
    quality: Quality,
    gpu: bool,
    assets: Assets,
    progress: bool,
) -> None:
    if not todo:
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")  # never fork a process that may hold bpy
    cols = (
        TextColumn("render"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} img/s"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    pool = ProcessPoolExecutor(
        min(workers, len(todo)),
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(set_name, resolution, quality, threads, assets, gpu),
    )
    try:
        with Progress(*cols, disable=not progress) as bar:
            task = bar.add_task("render", total=total, completed=done, rate="-")
            t0, n = time.perf_counter(), 0
            for fut in as_completed([pool.submit(_render_shard, job) for job in todo]):
                n += fut.result()
                bar.update(task, advance=fut.result(), rate=f"{n / (time.perf_counter() - t0):.1f}")
    except BrokenProcessPool:
        raise UserError(
            "a render worker died (is Blender's bpy installed with its system libraries? "
            "run scripts/setup.sh); finished shards are kept, rerun to resume"
        ) from None
    finally:
        pool.shutdown(cancel_futures=True)


def disk_needed(set_name: str, count: int, resolution: int) -> int:
    """Bytes a render of ``count`` images writes at its peak: every shard file and the dataset's arrays
    (:data:`~selfsup.data.dataset.ARRAY_DTYPES`) at once, before the shards are deleted."""
    arrays = ("images",) + (("segmentation", "depth", "instances", "normals") if set_name == "multi" else ())
    channels = {**ARRAY_CHANNELS, "images": 3}
    per_image = sum(np.dtype(ARRAY_DTYPES[a]).itemsize * channels.get(a, 1) for a in arrays) * resolution**2
    return 2 * count * per_image


def _shard_arrays(shards):
    """The arrays of each finished shard file, in order."""
    for path, _ in shards:
        with np.load(path) as shard:
            yield {k: shard[k] for k in shard.files}


def write_contact_sheet(path: Path, per_class: int = 8) -> Path:
    """``contact_sheet.png`` beside the arrays. Single set: one row per class, ``per_class`` images
    each. Multi set: rows of images, each above its segmentation (one colour per class)."""
    from PIL import Image

    images = np.load(path / "images.npy", mmap_mode="r")
    h, w = images.shape[1:3]
    if (path / "segmentation.npy").is_file():
        seg = np.load(path / "segmentation.npy", mmap_mode="r")
        palette = np.array(
            [[0, 0, 0]] + [[int(255 * c) for c in colorsys.hsv_to_rgb(k / 10, 0.8, 1.0)] for k in range(len(CLASSES))],
            np.uint8,
        )
        n = min(len(images), per_class * 2)
        tiles = [np.concatenate([images[i], palette[seg[i]]], 0) for i in range(n)]
        tiles += [np.zeros_like(tiles[0])] * (-n % per_class)
        rows = [np.concatenate(tiles[r : r + per_class], 1) for r in range(0, len(tiles), per_class)]
        sheet = np.concatenate(rows, 0)
    else:
        labels = pd.read_parquet(path / "labels.parquet", columns=["class_id"])
        sheet = np.full((len(CLASSES) * h, per_class * w, 3), 255, np.uint8)
        for c in range(len(CLASSES)):
            for j, i in enumerate(np.flatnonzero(labels.class_id.to_numpy() == c)[:per_class]):
                sheet[c * h : (c + 1) * h, j * w : (j + 1) * w] = images[i]
    Image.fromarray(sheet).save(path / "contact_sheet.png")
    return path / "contact_sheet.png"
