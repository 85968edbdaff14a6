"""A folder of real images (or a manifest CSV) → a dataset folder in the render's format (SPEC §9).

Sources:

- ``imagefolder``: one sub-folder per class (the layout of torchvision's ``ImageFolder`` and most
  labelling tools' exports) holding JPEG / PNG / WebP / BMP / TIFF files, in any depth of sub-folders;
- ``csv``: a manifest ``path,label[,group]`` (paths relative to the CSV's folder); ``group`` names the
  same object, patient or scene, and the splits are disjoint by group, as the renders' are by model.

Every image is decoded with Pillow (EXIF orientation applied), converted to RGB (greyscale,
palette, alpha over white, 16-bit scaled down: each counted in the manifest), resized with
antialiasing so that it fills (``crop``: centre-cropped) or fits (``pad``: black borders) a square
of ``resolution`` pixels. Splits are seeded and stratified by class (70/15/15 %); identical files
(same sha256) are kept in one group, so a duplicate never sits on both sides of a split. The
manifest lists every source file with its sha256: a changed source folder is a changed dataset.

Nothing is written to ``out`` until every image has been read: a bad file (corrupt, truncated,
not an image, over Pillow's decompression-bomb limit) is a one-line error naming it, and ``out``
is left as it was.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selfsup.core.errors import UserError
from selfsup.core.provenance import sha256_file
from selfsup.data.dataset import remove_dataset_files, write_dataset

SOURCES = ("imagefolder", "csv")
FITS = ("crop", "pad")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
SPLIT_SHARES = {"train": 0.7, "val": 0.15, "test": 0.15}
CHUNK = 512  # images decoded per chunk written


def _label_ok(label: str, where: str) -> str:
    if not label or any(c in label for c in ",\n\r"):
        raise UserError(f"{where}: label {label!r} is empty or holds a comma or a newline (labels are CSV fields)")
    return label


def scan_imagefolder(src: Path) -> list[tuple[Path, str, str]]:
    """(file, class, group) for every image under the class folders of ``src``; group = the file itself.
    Symlinks are followed once (a loop is an error); hidden files are skipped; any other file is an error."""
    if not src.is_dir():
        raise UserError(f"image folder {str(src)!r} does not exist or is not a folder")
    classes = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError(f"image folder {str(src)!r} has no class folders (one sub-folder per class)")
    items = []
    for folder in classes:
        label = _label_ok(folder.name, f"class folder {str(folder)!r}")
        files = _walk(folder)
        if not files:
            raise UserError(f"class folder {str(folder)!r} holds no images")
        items += [(f, label, str(f.relative_to(src))) for f in files]
    return items


def _walk(folder: Path) -> list[Path]:
    """Image files under ``folder`` (sorted), following symlinked folders; a folder seen twice on one path
    down (a symlink loop) is an error."""
    out: list[Path] = []

    def visit(d: Path, seen: frozenset) -> None:
        st = d.stat()
        key = (st.st_dev, st.st_ino)
        if key in seen:
            raise UserError(f"symlink loop at {str(d)!r}: a folder that contains itself")
        try:
            entries = sorted(d.iterdir())
        except OSError as e:
            raise UserError(f"cannot read folder {str(d)!r}: {e.strerror}") from None
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                is_dir = e.is_dir()
            except OSError:  # e.g. ELOOP from a link to itself
                raise UserError(f"symlink loop at {str(e)!r}: a link that points to itself") from None
            if is_dir:
                visit(e, seen | {key})
            elif e.suffix.lower() in IMAGE_SUFFIXES:
                out.append(e)
            elif e.is_file():
                raise UserError(
                    f"{str(e)!r} is not an image ({e.suffix or 'no extension'}): image folders hold only "
                    "JPEG, PNG, WebP, BMP or TIFF files"
                )
            else:
                raise UserError(f"{str(e)!r} is a broken link or not a regular file")

    visit(folder, frozenset())
    return out


def scan_csv(src: Path) -> list[tuple[Path, str, str]]:
    """(file, label, group) for every row of a ``path,label[,group]`` manifest (header optional)."""
    if not src.is_file():
        raise UserError(f"manifest {str(src)!r} does not exist or is not a file")
    try:
        with open(src, newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"manifest {str(src)!r} is not a readable CSV: {e}") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = [(i + 2, r) for i, r in enumerate(rows[1:])]
    else:
        rows = [(i + 1, r) for i, r in enumerate(rows)]
    items = []
    for line, row in rows:
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) not in (2, 3):
            raise UserError(f"manifest {str(src)!r} line {line}: {len(row)} fields, the format is path,label[,group]")
        path = (src.parent / row[0]).resolve() if not os.path.isabs(row[0]) else Path(row[0])
        label = _label_ok(row[1], f"manifest {str(src)!r} line {line}")
        if not path.is_file():
            raise UserError(f"manifest {str(src)!r} line {line}: file {row[0]!r} does not exist")
        items.append((path, label, row[2] if len(row) == 3 and row[2] else row[0]))
    if not items:
        raise UserError(f"manifest {str(src)!r} lists no images")
    return items


def decode(path: Path, resolution: int, fit: str, counts: dict) -> np.ndarray:
    """One image file → (resolution, resolution, 3) uint8; a file Pillow cannot decode is an error."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # refuse, do not just warn
            with Image.open(path) as im:
                im.load()
                im = ImageOps.exif_transpose(im)
                rgb = _to_rgb(im, counts)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UserError(f"image {str(path)!r} is too large to decode safely: {str(e).split('.')[0]}") from None
    except UnidentifiedImageError:
        raise UserError(f"{str(path)!r} is not an image Pillow can read (corrupt, or another format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(
            f"image {str(path)!r} is corrupt or truncated: {str(e).splitlines()[0] if str(e) else e!r}"
        ) from None
    size = (resolution, resolution)
    method = Image.Resampling.LANCZOS  # antialiased when shrinking
    out = ImageOps.fit(rgb, size, method) if fit == "crop" else ImageOps.pad(rgb, size, method, color=(0, 0, 0))
    return np.asarray(out, dtype=np.uint8)


def _to_rgb(im, counts: dict):
    from PIL import Image

    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit (or wider) greyscale: scale to 8 bits
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        im = Image.fromarray(np.clip(a / top * 255 + 0.5, 0, 255).astype(np.uint8), "L")
        counts["16-bit"] = counts.get("16-bit", 0) + 1
        return im.convert("RGB")
    if mode == "P":
        counts["palette"] = counts.get("palette", 0) + 1
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        counts["alpha"] = counts.get("alpha", 0) + 1
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in ("L", "1"):
        counts["greyscale"] = counts.get("greyscale", 0) + 1
    return im.convert("RGB")


def assign_splits(labels: list[str], groups: list[str], seed: int) -> list[str]:
    """Seeded splits, disjoint by group and stratified by class: groups in a seeded random order, each to
    the split furthest below its share of the group's most common class. Every class needs an image in
    every split."""
    rng = np.random.default_rng(seed)
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    names = sorted(by_group)
    order = [names[i] for i in rng.permutation(len(names))]
    totals: dict[str, int] = {}
    for lab in labels:
        totals[lab] = totals.get(lab, 0) + 1
    have = {lab: dict.fromkeys(SPLIT_SHARES, 0) for lab in totals}
    split = [""] * len(labels)
    for g in order:
        members = by_group[g]
        counts: dict[str, int] = {}
        for i in members:
            counts[labels[i]] = counts.get(labels[i], 0) + 1
        major = max(sorted(counts), key=counts.get)
        # the split whose count of this class is furthest below its share (ties: train, val, test)
        deficit = {s: SPLIT_SHARES[s] * totals[major] - have[major][s] for s in SPLIT_SHARES}
        empty = [s for s in ("val", "test", "train") if have[major][s] == 0 and totals[major] >= 3]
        chosen = empty[0] if empty and have[major]["train"] > 0 else max(SPLIT_SHARES, key=lambda s: deficit[s])
        for i in members:
            split[i] = chosen
            have[labels[i]][chosen] += 1
    for lab, n in sorted(have.items()):
        short = [s for s, k in n.items() if k == 0]
        if short:
            n_groups = len({groups[i] for i, x in enumerate(labels) if x == lab})
            raise UserError(
                f"class {lab!r} has {totals[lab]} image(s) in {n_groups} group(s): too few for the train/val/test "
                f"splits (none in {', '.join(short)}; at least 3 images in 3 groups per class)"
            )
    return split


@dataclass
class Plan:
    """What an import will write, all checked: the source files, their labels, groups and splits."""

    source: str
    src: Path
    out: Path
    items: list
    digests: list[str]
    groups: list[str]
    split: list[str]
    classes: list[str]
    params: dict
    files_digest: str
    duplicates: int
    done: dict | None = None  # the manifest of an identical import already in ``out``


def plan_import(
    source: str, src: str | Path, out: str | Path, resolution: int = 64, fit: str = "crop", seed: int = 0,
    replace: bool = False,
) -> Plan:  # fmt: skip
    """Check an import of ``src`` into ``out`` (every source file listed, hashed, labelled and split) before
    anything is decoded or written."""
    from selfsup.core import checks
    from selfsup.data.dataset import load_dataset

    if source not in SOURCES:
        raise UserError(f"unknown import source {source!r}: choose from {', '.join(SOURCES)}")
    if fit not in FITS:
        raise UserError(f"unknown --fit {fit!r}: choose from {', '.join(FITS)}")
    checks.numbers(resolution=resolution, seed=seed)
    src, out = Path(src), checks.output_folder(out, "--out")
    items = scan_imagefolder(src) if source == "imagefolder" else scan_csv(src)
    classes = sorted({label for _, label, _ in items})
    if len(classes) < 2:
        raise UserError(f"{str(src)!r} holds one class only ({classes[0]!r}): a classification needs at least two")
    digests = [sha256_file(f) for f, _, _ in items]
    # identical files join one group (the first one's), so a duplicate never crosses a split
    first: dict[str, str] = {}
    groups = [first.setdefault(digest, group) for (_, _, group), digest in zip(items, digests)]
    params = {
        "set": "single",
        "variant": source,
        "source": source,
        "path": str(src),
        "resolution": resolution,
        "fit": fit,
        "seed": seed,
        "count": len(items),
    }
    files_digest = hashlib.sha256("".join(sorted(digests)).encode()).hexdigest()[:16]
    done = None
    if (out / "manifest.json").is_file():
        try:
            old = load_dataset(out).manifest
        except UserError:
            old = None
        if old is not None and old.get("params") == params and old.get("source_digest") == files_digest:
            done = old
        elif not replace:
            raise UserError(f"{str(out)!r} already holds a dataset of other files or settings: --replace replaces it")
    if done is None:  # the images array, staged beside OUT before it moves in
        checks.fits_on_disk(out, len(items) * 3 * resolution**2, f"{len(items)} images at {resolution}²")
    split = assign_splits([label for _, label, _ in items], groups, seed) if done is None else []
    return Plan(
        source, src, out, items, digests, groups, split, classes, params, files_digest, len(items) - len(first), done
    )


def write_import(plan: Plan, progress: Callable[[int, int], None] | None = None) -> dict:
    """Decode every image of a checked ``plan`` and write the dataset (staged beside ``out``, moved in whole)."""
    if plan.done is not None:
        return plan.done
    items, groups, src = plan.items, plan.groups, plan.src
    resolution, fit = plan.params["resolution"], plan.params["fit"]
    group_ids = {g: k for k, g in enumerate(sorted(set(groups)))}
    class_ids = {c: k for k, c in enumerate(plan.classes)}
    counts: dict[str, int] = {}

    def chunks():
        for start in range(0, len(items), CHUNK):
            batch = items[start : start + CHUNK]
            yield {"image": np.stack([decode(f, resolution, fit, counts) for f, _, _ in batch])}
            if progress:
                progress(min(start + CHUNK, len(items)), len(items))

    rows = [
        {
            "index": i,
            "split": plan.split[i],
            "class_id": class_ids[label],
            "class_name": label,
            "model_id": group_ids[groups[i]],  # the unit the splits are disjoint by, as in a render
            "pose_bin": -1,  # no pose label in the source
            "source_path": str(f.relative_to(src)) if plan.source == "imagefolder" else str(f),
            "source_sha256": digest,
            "group": groups[i],
        }
        for i, ((f, label, _), digest) in enumerate(zip(items, plan.digests))
    ]
    out = plan.out
    staging = out.parent / f".{out.name}.import-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        manifest = write_dataset(
            staging,
            chunks(),
            rows,
            plan.params,
            classes=plan.classes,
            extra={
                "labels": ["class"],  # what the source labels: no pose, no dense maps
                "source_digest": plan.files_digest,
                "conversions": counts,
                "duplicates": plan.duplicates,
                "files": [{"path": r["source_path"], "sha256": r["source_sha256"]} for r in rows],
            },
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    out.mkdir(parents=True, exist_ok=True)
    remove_dataset_files(out)
    for f in sorted(staging.iterdir(), key=lambda f: f.name == "manifest.json"):
        os.replace(f, out / f.name)  # the manifest last: its presence marks the dataset finished
    staging.rmdir()
    return manifest


def import_images(
    source: str,
    src: str | Path,
    out: str | Path,
    resolution: int = 64,
    fit: str = "crop",
    seed: int = 0,
    replace: bool = False,
    progress: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict:
    """Import ``src`` (an image folder or a manifest CSV) as a dataset folder ``out``; returns the manifest.

    An existing dataset in ``out`` of the same source files and settings is kept (returned as is); one of
    other files or settings is an error unless ``replace``. ``warn`` receives one-line warnings (duplicates)."""
    plan = plan_import(source, src, out, resolution, fit, seed, replace)
    if plan.duplicates and warn:
        warn(duplicates_warning(plan))
    return write_import(plan, progress)


def duplicates_warning(plan: Plan) -> str:
    return f"{plan.duplicates} duplicate file(s) in {str(plan.src)!r} (same sha256): each kept, in its original's split"
