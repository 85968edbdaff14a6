"""The bad-input catalogue, run through the real CLI: every case must exit with a non-zero status,
print exactly one line (``error: ...``) that names the bad value, print no traceback, and leave
every file that existed before byte-identical (and add none).

The world the cases run against: a real tiny render, a real pretrained backbone, a scratch folder,
a finished report, and damaged copies of each (made here, before the snapshot). A case may set
environment variables (a tracking URI); ``{huge}`` is a dataset too large for this machine's memory,
kept outside the world (its images are a sparse file: it takes no disk, and no case copies it)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

GOOD_ROWS = [
    {
        "method": m,
        "task": "classification",
        "protocol": "finetune",
        "label_budget": n,
        "seed": s,
        "metric": "accuracy",
        "value": round(base + 0.1 * np.log2(n / 8) + 0.01 * s, 4),
    }
    for m, base in (("scratch", 0.2), ("rotation", 0.25))
    for n in (8, 16, 32)
    for s in (0, 1, 2)
]


def _copy_dataset(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_labels(folder: Path, edit) -> None:
    labels = pd.read_parquet(folder / "labels.parquet")
    edit(labels).to_parquet(folder / "labels.parquet", index=False)


def _results(folder: Path, rows, name="results.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / name, index=False)
    return folder / name


@pytest.fixture(scope="module")
def world(tiny_dataset, tiny_rotation, tmp_path_factory):
    """Everything the cases point at; returns the placeholders of the case arguments."""
    w = tmp_path_factory.mktemp("bad_input")
    ds = _copy_dataset(tiny_dataset, w / "ds")
    rot = Path(shutil.copytree(tiny_rotation, w / "rot"))
    (w / "file.txt").write_text("a file, not a folder\n")

    # damaged datasets
    f32 = _copy_dataset(ds, w / "ds_float32")
    np.save(f32 / "images.npy", np.load(f32 / "images.npy").astype(np.float32) / 255)
    _edit_labels(_copy_dataset(ds, w / "ds_renamed"), lambda df: df.rename(columns={"class_id": "label"}))
    _edit_labels(
        _copy_dataset(ds, w / "ds_no_train"),
        lambda df: df.assign(split=df["split"].astype(str).replace("train", "val")),
    )
    _edit_labels(
        _copy_dataset(ds, w / "ds_no_val"), lambda df: df.assign(split=df["split"].astype(str).replace("val", "train"))
    )
    _edit_labels(
        _copy_dataset(ds, w / "ds_bad_class"), lambda df: df.assign(class_id=df["class_id"].where(df.index != 3, 12))
    )
    tampered = _copy_dataset(ds, w / "ds_tampered")
    with open(tampered / "images.npy", "r+b") as f:  # one pixel, format intact
        f.seek(-1, 2)
        byte = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([byte[0] ^ 0xFF]))

    # damaged --init folders
    for name in ("init_garbage", "init_empty", "init_pickle", "init_badjson", "init_mismatch"):
        shutil.copytree(rot, w / name, ignore=shutil.ignore_patterns("checkpoint.pt"))
    (w / "init_garbage" / "backbone.safetensors").write_bytes(b"\x00garbage" * 100)
    (w / "init_empty" / "backbone.safetensors").write_bytes(b"")
    import torch

    torch.save({"conv.weight": torch.zeros(3)}, w / "init_pickle" / "backbone.safetensors")
    (w / "init_badjson" / "meta.json").write_text("{not json")
    meta = json.loads((rot / "meta.json").read_text())
    (w / "init_mismatch" / "meta.json").write_text(json.dumps({**meta, "width": 0.25}))

    # an unfinished pretraining (a killed run): only its checkpoint
    (w / "killed").mkdir()
    shutil.copy(rot / "checkpoint.pt", w / "killed" / "checkpoint.pt")

    run_cli("pretrain", "--method", "scratch", "--data", str(ds), "--out", str(w / "scratch"), "--width", "0.125")
    assert (w / "scratch" / "meta.json").is_file()

    # results tables and a finished report made from the good one
    good = _results(w / "res_good", GOOD_ROWS)
    r = run_cli("report", "--results", str(good), "--out", str(w / "report"), "--bootstrap", "50")
    assert r.returncode == 0, r.stderr
    _results(w / "res_header", [], "results.csv")
    pd.DataFrame(columns=list(GOOD_ROWS[0])).to_csv(w / "res_header" / "results.csv", index=False)
    _results(w / "res_nan", GOOD_ROWS[:5] + [{**GOOD_ROWS[5], "value": float("nan")}] + GOOD_ROWS[6:])
    _results(w / "res_inf", GOOD_ROWS[:-1] + [{**GOOD_ROWS[-1], "value": float("inf")}])
    _results(w / "res_negbudget", GOOD_ROWS + [{**GOOD_ROWS[-1], "label_budget": -5}])
    _results(w / "res_zerobudget", GOOD_ROWS + [{**GOOD_ROWS[-1], "label_budget": 0}])
    _results(w / "res_dup", GOOD_ROWS + [GOOD_ROWS[4]])
    _results(w / "res_noscratch", GOOD_ROWS + [{**r, "task": "pose"} for r in GOOD_ROWS if r["method"] == "rotation"])
    _results(w / "res_nocol", [{k: v for k, v in r.items() if k != "seed"} for r in GOOD_ROWS])
    _results(w / "res_text", GOOD_ROWS[:-1] + [{**GOOD_ROWS[-1], "value": "high"}])
    # rows no run could have written
    _results(w / "res_seed_half", GOOD_ROWS[:-1] + [{**GOOD_ROWS[-1], "seed": 0.5}])
    _results(w / "res_budget_frac", GOOD_ROWS[:-1] + [{**GOOD_ROWS[-1], "label_budget": 12.5}])
    _results(w / "res_acc_high", GOOD_ROWS[:3] + [{**GOOD_ROWS[3], "value": 1.7}] + GOOD_ROWS[4:])
    _results(w / "res_acc_negative", GOOD_ROWS[:-1] + [{**GOOD_ROWS[-1], "value": -0.2}])
    _results(w / "res_metric_unknown", GOOD_ROWS + [{**GOOD_ROWS[0], "metric": "f1"}])
    _results(w / "res_task_unknown", GOOD_ROWS + [{**r, "task": "captioning"} for r in GOOD_ROWS])

    # params files for `selfsup study`
    params = Path(__file__).resolve().parents[2] / "params.yaml"
    text = params.read_text()
    bad_budgets, replaced = re.subn(r'budgets: "[0-9,]+"', 'budgets: "50,50,250"', text, count=1)
    assert replaced == 1, "params.yaml has no budgets line to corrupt"
    (w / "p_badbudget.yaml").write_text(bad_budgets)
    (w / "p_badwidth.yaml").write_text(text.replace("width: 0.125", "width: -1", 1))
    (w / "p_broken.yaml").write_text("datasets: [unclosed\n")
    huge, replaced = re.subn(r"count: [0-9]+", "count: 1000000000000", text, count=1)
    assert replaced == 1, "params.yaml has no dataset count to blow up"
    (w / "params.yaml").write_text(huge)  # the study that `selfsup study` in the world's folder would run
    (w / "p_import_in_datasets.yaml").write_text(
        "datasets:\n  mine: {source: imagefolder, path: photos}\nstudy:\n  single: [mine]\n"
    )
    _image_folders(w)
    return {
        "w": str(w),
        "ds": str(ds),
        "rot": str(rot),
        "scratch": str(w / "scratch"),
        "file": str(w / "file.txt"),
        "huge": str(_huge_dataset(ds, tmp_path_factory.mktemp("huge") / "ds_huge")),
    }


def _huge_dataset(ds: Path, out: Path) -> Path:
    """A dataset in the format whose train split is larger than this machine's available memory: the
    tiny render's labels repeated, and images.npy a sparse file of that many 128² images (no disk used)."""
    from selfsup.data.augment import available_memory

    row = 128 * 128 * 3
    n = int(available_memory(torch_cpu()) / row / 0.6) + 1  # 70 % of it is the train split
    out.mkdir(parents=True)
    shutil.copy(ds / "manifest.json", out / "manifest.json")
    labels = pd.read_parquet(ds / "labels.parquet")
    labels.iloc[np.arange(n) % len(labels)].reset_index(drop=True).to_parquet(out / "labels.parquet", index=False)
    np.lib.format.open_memmap(out / "images.npy", mode="w+", dtype=np.uint8, shape=(n, 128, 128, 3)).flush()
    return out


def torch_cpu():
    import torch

    return torch.device("cpu")


def _digit_png(folder: Path, name: str, k: int) -> None:
    from PIL import Image
    from sklearn.datasets import load_digits

    if getattr(_digit_png, "cache", None) is None:
        _digit_png.cache = load_digits().images
    images = _digit_png.cache
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray((images[k] * 255 / 16).astype(np.uint8), "L").save(folder / name)


def _image_folder(root: Path, per_class: int = 6, classes: int = 3) -> Path:
    for c in range(classes):
        for i in range(per_class):
            _digit_png(root / f"c{c}", f"{i}.png", 10 * i + c)
    return root


def _image_folders(w: Path) -> None:
    """Real digit images in ImageFolder trees, good and damaged, for `selfsup import`."""
    import struct
    import zlib

    from selfsup.data.imports import import_images

    import_images("imagefolder", _image_folder(w / "img_good"), w / "imp", resolution=16)  # a good import
    corrupt = _image_folder(w / "img_corrupt")
    (corrupt / "c1" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    truncated = _image_folder(w / "img_truncated")
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        truncated / "c2" / "cut.jpg", quality=95
    )
    data = (truncated / "c2" / "cut.jpg").read_bytes()
    (truncated / "c2" / "cut.jpg").write_bytes(data[: len(data) // 2])
    (_image_folder(w / "img_text") / "c0" / "notes.txt").write_text("not an image\n")
    (_image_folder(w / "img_empty_class") / "c9").mkdir()
    _image_folder(w / "img_one_class", classes=1)
    few = _image_folder(w / "img_few")
    for f in sorted((few / "c2").iterdir())[2:]:
        f.unlink()
    bomb = _image_folder(w / "img_bomb")  # a PNG whose header says 20000 × 20000 (Pillow's bomb limit: 89 Mpx)
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))  # noqa: E731
    (bomb / "c0" / "huge.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    )
    loop = _image_folder(w / "img_loop")
    (loop / "c1" / "again").symlink_to("..", target_is_directory=True)
    rows = [f"img_good/c{c}/{i}.png,c{c}" for c in range(3) for i in range(6)]
    (w / "m_missing.csv").write_text("path,label\n" + "\n".join([*rows, "img_good/c0/99.png,c0"]) + "\n")
    (w / "m_comma.csv").write_text("path,label\n" + "\n".join([*rows[:-1], f'{rows[-1].split(",")[0]},"c2,x"']) + "\n")
    (w / "m_newline.csv").write_text(
        "path,label\n" + "\n".join([*rows[:-1], f'{rows[-1].split(",")[0]},"c2\nx"']) + "\n"
    )


FT = [
    "finetune",
    "--task",
    "classification",
    "--data",
    "{ds}",
    "--out",
    "{w}/ft",
    "--steps",
    "2",
    "--epochs",
    "1",
    "--batch-size",
    "8",
    "--width",
    "0.125",
]
PR = ["probe", "--task", "classification", "--data", "{ds}", "--init", "{rot}", "--out", "{w}/pr"]
PT = ["pretrain", "--method", "rotation", "--data", "{ds}", "--epochs", "1", "--batch-size", "8", "--width", "0.125"]
REP = ["report", "--out", "{w}/report", "--bootstrap", "50", "--results"]
TU = ["tune", "--task", "classification", "--data", "{ds}", "--init", "{rot}", "--budget", "8", "--out", "{w}/tu"]
RE = ["render", "--set", "single", "--variant=-C--", "--count", "8", "--resolution", "16", "--samples", "1"]

IM = ["import", "--from", "imagefolder", "--resolution", "16"]

DEAD = "http://127.0.0.1:9"  # nothing listens on the discard port here: a tracking server that is down

# (case id, arguments, what the one line must contain[, environment variables])
CASES = [
    # a store a URL names that is down or cannot be opened (each failing in seconds: test_cli.py times it)
    (
        "finetune-tracking-server-down",
        [*FT, "--budgets", "8"],
        f"{DEAD}' is not reachable",
        {"MLFLOW_TRACKING_URI": DEAD},
    ),
    (
        "pretrain-tracking-server-down",
        [*PT, "--out", "{w}/p"],
        f"{DEAD}' is not reachable",
        {"MLFLOW_TRACKING_URI": DEAD},
    ),
    ("report-tracking-server-down", [*REP, "{w}/res_good"], f"{DEAD}' is not reachable", {"MLFLOW_TRACKING_URI": DEAD}),
    (
        "tune-storage-server-down",
        [*TU, "--storage", "mysql+pymysql://optuna:secret@127.0.0.1:9/optuna"],
        "'mysql+pymysql://optuna:***@127.0.0.1:9/optuna' is not reachable",
    ),
    (
        "finetune-tracking-sqlite-no-folder",
        [*FT, "--budgets", "8"],
        "folder '{w}/nodir' does not exist",
        {"MLFLOW_TRACKING_URI": "sqlite:///{w}/nodir/mlflow.db"},
    ),
    (
        "finetune-tracking-store-not-a-database",
        [*FT, "--budgets", "8"],
        "file.txt' is not an SQLite database",
        {"MLFLOW_TRACKING_URI": "sqlite:///{w}/file.txt"},
    ),
    ("tune-storage-sqlite-no-folder", [*TU, "--storage", "sqlite:////nonexistent/dir/x.db"], "'/nonexistent/dir'"),
    ("tune-storage-sqlite-not-a-database", [*TU, "--storage", "sqlite:///{file}"], "is not an SQLite database"),
    ("tune-storage-sqlite-is-folder", [*TU, "--storage", "sqlite:///{w}/res_good"], "is an existing folder"),
    ("tune-storage-journal-no-folder", [*TU, "--storage", "{w}/nodir/optuna.log"], "folder '{w}/nodir' does not exist"),
    # sizes far beyond the machine: refused before any work, naming the size and what there is
    ("render-count-beyond-disk", [*RE, "--count", "1000000000000", "--out", "{w}/r"], "16² need 1.54 PB of disk"),
    (
        "render-multi-beyond-disk",
        [*RE, "--set", "multi", "--count", "100000000", "--resolution", "128", "--out", "{w}/r"],
        "need 42.6 TB of disk",
    ),
    ("study-beyond-disk", ["study", "--all", "--yes"], "the study's 1 datasets still to render need 6.14 PB of disk"),
    ("pretrain-dataset-beyond-memory", [*PT, "--data", "{huge}", "--out", "{w}/p"], "of memory on cpu, which has"),
    # a training that diverges: no row, no cell file, no backbone, no checkpoint
    (
        "finetune-diverges",
        [*FT, "--budgets", "8", "--steps", "8", "--epochs", "2", "--lr", "1000"],
        "scratch/classification cell n=8, seed 0: training diverged in epoch 1 of 2 with lr 1000",
    ),
    (
        "finetune-stacked-diverges",
        [*FT, "--budgets", "8", "--seeds", "0,1", "--stack", "2", "--steps", "8", "--epochs", "2", "--lr", "1000"],
        "training diverged in epoch 1 of 2 with lr 1000",
    ),
    (
        "pretrain-diverges",
        [*PT, "--method", "vae", "--epochs", "2", "--lr", "1000", "--out", "{w}/p"],
        "pretrain vae → '{w}/p': training diverged in epoch 1 of 2 with lr 1000",
    ),
    # results no run could produce
    ("report-seed-not-whole", [*REP, "{w}/res_seed_half"], "invalid seed 0.5: must be a whole number at"),
    ("report-budget-not-whole", [*REP, "{w}/res_budget_frac"], "invalid label budget 12.5: must be a whole number"),
    ("report-accuracy-above-1", [*REP, "{w}/res_acc_high"], "impossible accuracy 1.7 at"),
    ("report-accuracy-negative", [*REP, "{w}/res_acc_negative"], "impossible accuracy -0.2 at"),
    ("report-metric-unknown", [*REP, "{w}/res_metric_unknown"], "unknown metric 'f1' of task 'classification'"),
    ("report-task-unknown", [*REP, "{w}/res_task_unknown"], "unknown task 'captioning'"),
    # numbers past their upper limit (checks.LIMITS), which overflowed or could never finish
    (
        "finetune-seed-overflow",
        [*FT, "--budgets", "8", "--seeds", "99999999999999999999999"],
        "invalid seed 99999999999999999999999: must be at most 9223372036854775807",
    ),
    (
        "render-seed-overflow",
        [*RE, "--seed", "18446744073709551616", "--out", "{w}/r"],
        "invalid seed 18446744073709551616",
    ),
    ("render-resolution-huge", [*RE, "--resolution", "100000", "--out", "{w}/r"], "invalid resolution 100000"),
    ("pretrain-batch-huge", [*PT, "--batch-size", "1000000000", "--out", "{w}/p"], "invalid batch size 1000000000"),
    ("pretrain-width-huge", [*PT, "--width", "1000", "--out", "{w}/p"], "invalid width 1000.0: must be at most 16"),
    ("finetune-budget-huge", [*FT, "--budgets", "10000000000"], "invalid label budget 10000000000"),
    ("probe-k-huge", [*PR, "--budgets", "5", "--protocol", "knn", "--k", "100000000"], "invalid k 100000000"),
    ("report-bootstrap-huge", [*REP, "{w}/res_good", "--bootstrap", "100000000"], "invalid bootstrap 100000000"),
    ("tune-trials-huge", [*TU, "--trials", "100000000"], "invalid trials 100000000"),
    (
        "study-confirm-huge",
        ["study", "--confirm-above", "1e12", "--estimate-only"],
        "invalid confirm-above 1000000000000.0: must be at most 1e+06",
    ),
    # import (a folder of real images)
    ("import-corrupt-image", [*IM, "{w}/img_corrupt", "--out", "{w}/i"], "bad.png' is not an image Pillow can read"),
    ("import-truncated-image", [*IM, "{w}/img_truncated", "--out", "{w}/i"], "cut.jpg' is corrupt or truncated"),
    ("import-not-an-image", [*IM, "{w}/img_text", "--out", "{w}/i"], "notes.txt' is not an image (.txt)"),
    ("import-empty-class", [*IM, "{w}/img_empty_class", "--out", "{w}/i"], "c9' holds no images"),
    ("import-one-class", [*IM, "{w}/img_one_class", "--out", "{w}/i"], "one class only ('c0')"),
    ("import-too-few-in-a-class", [*IM, "{w}/img_few", "--out", "{w}/i"], "class 'c2' has 2 image(s)"),
    ("import-decompression-bomb", [*IM, "{w}/img_bomb", "--out", "{w}/i"], "huge.png' is too large to decode safely"),
    ("import-symlink-loop", [*IM, "{w}/img_loop", "--out", "{w}/i"], "symlink loop at"),
    ("import-missing-folder", [*IM, "{w}/nowhere", "--out", "{w}/i"], "nowhere' does not exist"),
    ("import-source-unknown", ["import", "--from", "zip", "{w}/img_good", "--out", "{w}/i"], "'zip'"),
    ("import-fit-unknown", [*IM, "--fit", "stretch", "{w}/img_good", "--out", "{w}/i"], "'stretch'"),
    (
        "import-resolution-4",
        ["import", "--from", "imagefolder", "--resolution", "4", "{w}/img_good", "--out", "{w}/i"],
        "invalid resolution 4",
    ),  # noqa: E501
    ("import-out-is-a-file", [*IM, "{w}/img_good", "--out", "{file}"], "is an existing file"),
    ("import-over-another-dataset", [*IM, "{w}/img_few", "--out", "{w}/imp"], "already holds a dataset of other files"),
    (
        "import-csv-missing-file",
        ["import", "--from", "csv", "{w}/m_missing.csv", "--out", "{w}/i"],
        "'img_good/c0/99.png' does not exist",
    ),  # noqa: E501
    ("import-csv-label-comma", ["import", "--from", "csv", "{w}/m_comma.csv", "--out", "{w}/i"], "label 'c2,x'"),
    ("import-csv-label-newline", ["import", "--from", "csv", "{w}/m_newline.csv", "--out", "{w}/i"], "label 'c2\\nx'"),
    ("finetune-pose-on-imported", [*FT[:2], "pose", "--data", "{w}/imp", *FT[5:]], "needs pose labels"),
    (
        "study-import-under-datasets",
        ["study", "--params", "{w}/p_import_in_datasets.yaml", "--estimate-only"],
        "goes under imports",
    ),
    # render
    ("render-count-0", [*RE, "--count", "0", "--out", "{w}/r"], "invalid count 0"),
    ("render-count-negative", [*RE, "--count", "-5", "--out", "{w}/r"], "invalid count -5"),
    ("render-count-text", [*RE, "--count", "many", "--out", "{w}/r"], "'many'"),
    ("render-workers-0", [*RE, "--workers", "0", "--out", "{w}/r"], "invalid workers 0"),
    ("render-samples-0", [*RE, "--samples", "0", "--out", "{w}/r"], "invalid samples 0"),
    ("render-resolution-4", [*RE, "--resolution", "4", "--out", "{w}/r"], "invalid resolution 4"),
    ("render-multi-resolution-60", [*RE, "--set", "multi", "--resolution", "60", "--out", "{w}/r"], "resolution 60"),
    ("render-seed-negative", [*RE, "--seed", "-1", "--out", "{w}/r"], "invalid seed -1"),
    ("render-set-unknown", [*RE, "--set", "triple", "--out", "{w}/r"], "'triple'"),
    ("render-variant-unknown", [*RE, "--variant=XYZW", "--out", "{w}/r"], "'XYZW'"),
    ("render-shard-out-of-range", [*RE, "--shard", "3/2", "--out", "{w}/r"], "'3/2'"),
    ("render-out-is-a-file", [*RE, "--out", "{file}"], "is an existing file"),
    ("render-over-another-dataset", [*RE, "--out", "{ds}"], "already holds a dataset with other parameters"),
    ("render-denoise-unknown", [*RE, "--denoise", "magic", "--out", "{w}/r"], "unknown denoiser 'magic'"),
    ("render-device-unknown", [*RE, "--device", "tpu", "--out", "{w}/r"], "unknown device 'tpu'"),
    # pretrain
    (
        "pretrain-scratch-over-trained",
        ["pretrain", "--method", "scratch", "--data", "{ds}", "--out", "{rot}"],
        "already holds a pretrained rotation backbone",
    ),
    (
        "pretrain-scratch-width-0",
        ["pretrain", "--method", "scratch", "--data", "{ds}", "--out", "{w}/s2", "--width", "0"],
        "invalid width 0.0",
    ),
    (
        "pretrain-scratch-no-data",
        ["pretrain", "--method", "scratch", "--data", "/nonexistent", "--out", "{w}/s2"],
        "'/nonexistent'",
    ),
    ("pretrain-other-epochs-over-trained", [*PT, "--epochs", "2", "--out", "{rot}"], "epochs 1"),
    ("pretrain-width-negative", [*PT, "--width", "-1", "--out", "{w}/p"], "invalid width -1.0"),
    ("pretrain-epochs-0", [*PT, "--epochs", "0", "--out", "{w}/p"], "invalid epochs 0"),
    ("pretrain-lr-negative", [*PT, "--lr", "-1", "--out", "{w}/p"], "invalid lr -1.0"),
    ("pretrain-lr-nan", [*PT, "--lr", "nan", "--out", "{w}/p"], "invalid lr nan"),
    ("pretrain-batch-0", [*PT, "--batch-size", "0", "--out", "{w}/p"], "invalid batch size 0"),
    ("pretrain-method-unknown", [*PT, "--method", "dino9", "--out", "{w}/p"], "'dino9'"),
    ("pretrain-colour-unknown", [*PT, "--colour", "cmyk", "--out", "{w}/p"], "'cmyk'"),
    ("pretrain-out-is-a-file", [*PT, "--out", "{file}"], "is an existing file"),
    ("pretrain-float32-images", [*PT, "--data", "{w}/ds_float32", "--out", "{w}/p"], "float32"),
    ("pretrain-no-train-split", [*PT, "--data", "{w}/ds_no_train", "--out", "{w}/p"], "no train images"),
    (
        "pretrain-resume-other-method",
        [*PT, "--method", "simclr", "--resume", "--out", "{w}/killed"],
        "checkpoint of other settings (method",
    ),
    (
        "pretrain-checkpoint-other-width",
        [*PT, "--width", "0.25", "--out", "{w}/killed"],
        "checkpoint of other settings (width",
    ),
    (
        "pretrain-verify-tampered",
        [*PT, "--data", "{w}/ds_tampered", "--verify", "--out", "{w}/p"],
        "images.npy has sha256",
    ),
    # finetune
    ("finetune-duplicate-budgets", [*FT, "--budgets", "4,4"], "duplicate label budget 4"),
    ("finetune-budget-0", [*FT, "--budgets", "0"], "invalid label budget 0"),
    ("finetune-budget-negative", [*FT, "--budgets", "8,-3"], "invalid label budget -3"),
    ("finetune-budget-text", [*FT, "--budgets", "8,x"], "'x'"),
    ("finetune-budget-too-large", [*FT, "--budgets", "100000"], "label budget 100000"),
    ("finetune-seed-negative", [*FT, "--budgets", "8", "--seeds", "-1"], "invalid seed -1"),
    ("finetune-duplicate-seeds", [*FT, "--budgets", "8", "--seeds", "0,0"], "duplicate seed 0"),
    ("finetune-width-0", [*FT, "--budgets", "8", "--width", "0"], "invalid width 0.0"),
    ("finetune-width-negative", [*FT, "--budgets", "8", "--width", "-1"], "invalid width -1.0"),
    ("finetune-stack-0", [*FT, "--budgets", "8", "--stack", "0"], "invalid stack 0"),
    ("finetune-stack-text", [*FT, "--budgets", "8", "--stack", "two"], "'two'"),
    ("finetune-lr-nan", [*FT, "--budgets", "8", "--lr", "nan"], "invalid lr nan"),
    ("finetune-lr-negative", [*FT, "--budgets", "8", "--lr", "-1"], "invalid lr -1.0"),
    ("finetune-steps-0", [*FT, "--budgets", "8", "--steps", "0"], "invalid steps 0"),
    ("finetune-weight-decay-negative", [*FT, "--budgets", "8", "--weight-decay", "-1"], "invalid weight decay -1.0"),
    ("finetune-protocol-unknown", [*FT, "--budgets", "8", "--protocol", "frozen-9"], "'frozen-9'"),
    ("finetune-task-unknown", [*FT, "--budgets", "8", "--task", "captioning"], "'captioning'"),
    ("finetune-task-wrong-set", [*FT, "--budgets", "8", "--task", "depth"], "'depth'"),
    ("finetune-bn-unknown", [*FT, "--budgets", "8", "--init", "{rot}", "--bn", "sideways"], "'sideways'"),
    ("finetune-out-is-a-file", [*FT, "--budgets", "8", "--out", "{file}"], "is an existing file"),
    ("finetune-augment-unknown", [*FT, "--budgets", "8", "--augment", "mixup"], "'mixup'"),
    ("finetune-params-file-missing", [*FT, "--budgets", "8", "--params-file", "{w}/none.json"], "none.json"),
    ("finetune-init-garbage", [*FT, "--budgets", "8", "--init", "{w}/init_garbage"], "not a readable safetensors"),
    ("finetune-init-empty", [*FT, "--budgets", "8", "--init", "{w}/init_empty"], "not a readable safetensors"),
    ("finetune-init-pickle", [*FT, "--budgets", "8", "--init", "{w}/init_pickle"], "not a readable safetensors"),
    ("finetune-init-bad-json", [*FT, "--budgets", "8", "--init", "{w}/init_badjson"], "meta.json is not valid JSON"),
    ("finetune-init-size-mismatch", [*FT, "--budgets", "8", "--init", "{w}/init_mismatch"], "width 0.25"),
    ("finetune-init-missing", [*FT, "--budgets", "8", "--init", "{w}/nowhere"], "nowhere"),
    ("finetune-renamed-label-column", [*FT, "--budgets", "8", "--data", "{w}/ds_renamed"], "lacks column(s) class_id"),
    ("finetune-no-train-split", [*FT, "--budgets", "8", "--data", "{w}/ds_no_train"], "no train images"),
    ("finetune-empty-val-split", [*FT, "--budgets", "8", "--data", "{w}/ds_no_val"], "no val images"),
    ("finetune-class-out-of-range", [*FT, "--budgets", "8", "--data", "{w}/ds_bad_class"], "label 12 is out of range"),
    ("finetune-float32-images", [*FT, "--budgets", "8", "--data", "{w}/ds_float32"], "images.npy is float32"),
    (
        "finetune-verify-tampered",
        [*FT, "--budgets", "8", "--data", "{w}/ds_tampered", "--verify"],
        "images.npy has sha256",
    ),
    # probe
    ("probe-scratch-init", [*PR, "--init", "{scratch}"], "scratch folder"),
    ("probe-duplicate-budgets", [*PR, "--budgets", "5,5"], "duplicate label budget 5"),
    ("probe-k-0", [*PR, "--budgets", "5", "--protocol", "knn", "--k", "0"], "invalid k 0"),
    ("probe-protocol-unknown", [*PR, "--budgets", "5", "--protocol", "svm"], "'svm'"),
    (
        "probe-knn-metric-unknown",
        [*PR, "--budgets", "5", "--protocol", "knn", "--knn-metric", "manhattan"],
        "'manhattan'",
    ),
    ("probe-out-is-a-file", [*PR, "--budgets", "5", "--out", "{file}"], "is an existing file"),
    # readout
    ("readout-no-dataset", ["readout", "--data", "{w}/nowhere", "--init", "{rot}", "--out", "{w}/ro"], "nowhere"),
    ("readout-out-is-a-file", ["readout", "--data", "{ds}", "--init", "{rot}", "--out", "{file}"], "existing file"),
    ("readout-init-missing", ["readout", "--data", "{ds}", "--init", "{w}/no_model", "--out", "{w}/ro"], "no_model"),
    # report
    ("report-header-only", [*REP, "{w}/res_header"], "has no rows"),
    ("report-nan-value", [*REP, "{w}/res_nan"], "non-finite value nan"),
    ("report-inf-value", [*REP, "{w}/res_inf"], "non-finite value inf"),
    ("report-negative-budget", [*REP, "{w}/res_negbudget"], "invalid label budget -5"),
    ("report-zero-budget", [*REP, "{w}/res_zerobudget"], "invalid label budget 0"),
    ("report-duplicate-rows", [*REP, "{w}/res_dup"], "duplicate result row"),
    ("report-task-without-scratch", [*REP, "{w}/res_noscratch"], "task 'pose' has no scratch results"),
    ("report-missing-column", [*REP, "{w}/res_nocol"], "lacks column(s) seed"),
    ("report-text-value", [*REP, "{w}/res_text"], "'high'"),
    ("report-bootstrap-negative", [*REP, "{w}/res_good", "--bootstrap", "-5"], "invalid bootstrap -5"),
    ("report-interpolation-unknown", [*REP, "{w}/res_good", "--interpolation", "cubic"], "'cubic'"),
    ("report-export-unknown", [*REP, "{w}/res_good", "--export", "gif"], "'gif'"),
    ("report-out-is-a-file", ["report", "--results", "{w}/res_good", "--out", "{file}"], "is an existing file"),
    ("report-results-missing", [*REP, "{w}/nowhere.csv"], "nowhere.csv"),
    ("report-compute-missing", [*REP, "{w}/res_good", "--compute", "{w}/no_compute.csv"], "no_compute.csv"),
    ("report-compute-no-columns", [*REP, "{w}/res_good", "--compute", "{file}"], "lacks the column(s) stage"),
    # tune
    ("tune-storage-unknown-scheme", [*TU, "--storage", "notascheme://x"], "'notascheme'"),
    (
        "tune-storage-no-driver",
        [*TU, "--storage", "postgresql://user:secret@127.0.0.1/optuna"],
        "needs the database driver psycopg",
    ),
    ("tune-storage-not-a-url", [*TU, "--storage", "{w}/study.txt"], "study.txt"),
    ("tune-trials-negative", [*TU, "--trials", "-1"], "invalid trials -1"),
    ("tune-budget-0", [*TU, "--budget", "0"], "invalid budget 0"),
    ("tune-lr-nan", [*TU, "--lr", "nan"], "invalid lr nan"),
    ("tune-pretrain-unknown", [*TU, "--pretrain", "dino9"], "'dino9'"),
    # study and profile
    ("study-confirm-negative", ["study", "--confirm-above", "-1", "--estimate-only"], "invalid confirm-above -1.0"),
    ("study-params-missing", ["study", "--params", "{w}/none.yaml", "--estimate-only"], "none.yaml"),
    ("study-params-broken-yaml", ["study", "--params", "{w}/p_broken.yaml", "--estimate-only"], "not valid YAML"),
    (
        "study-params-duplicate-budget",
        ["study", "--params", "{w}/p_badbudget.yaml", "--estimate-only"],
        "duplicate label budget 50",
    ),
    (
        "study-params-negative-width",
        ["study", "--params", "{w}/p_badwidth.yaml", "--estimate-only"],
        "invalid width -1",
    ),
    ("profile-unknown", ["profile", "nosuch"], "'nosuch'"),
    # verify
    ("verify-tampered", ["verify", "{w}/ds_tampered"], "images.npy has sha256"),
    ("verify-float32", ["verify", "{w}/ds_float32"], "float32"),
]


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_catalogue_is_large_and_covers_every_command():
    commands = {c[1][0] for c in CASES}
    assert {
        "render",
        "import",
        "pretrain",
        "finetune",
        "probe",
        "report",
        "tune",
        "study",
        "profile",
        "verify",
    } <= commands
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def outcomes(world, tmp_path_factory):
    """Every case run once through the CLI, two at a time (the machine has 2 cores; each case is
    mostly Python start-up), each in its own copy of the world: case → (argv, result, files before,
    files after)."""
    from concurrent.futures import ThreadPoolExecutor

    root = Path(world["w"])
    base = tmp_path_factory.mktemp("cases")

    def one(case):
        name, args, _, *env = case
        w = base / name
        shutil.copytree(root, w, symlinks=True)
        places = {k: v.replace(str(root), str(w)) for k, v in world.items()}
        argv = [a.format(**places) for a in args]
        env = {k: v.format(**places) for k, v in (env[0] if env else {}).items()}
        before = _snapshot(w)
        r = run_cli(*argv, cwd=w, timeout=300, env=env)
        after = _snapshot(w)
        shutil.rmtree(w)
        return name, (argv, r, before, after, places)

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(one, CASES))


@pytest.mark.parametrize("case,args,expected", [c[:3] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(outcomes, case, args, expected):
    argv, r, before, after, places = outcomes[case]
    out = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    assert r.returncode != 0, f"accepted: {argv}\n{r.stdout}{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    assert len(out) == 1, f"{len(out)} lines:\n" + "\n".join(out)
    assert out[0].startswith("error: ") and "internal error" not in out[0], out[0]
    assert expected.format(**places) in out[0], out[0]
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))[:5]}"


def test_killed_pretraining_resumes_by_default(world, tmp_path):
    """A rerun without --resume, on a folder left by a run killed after its last checkpoint (no backbone
    yet), continues from the checkpoint: the backbone is the uninterrupted run's, and the epoch history
    (with its measured times) is the killed run's, not a new one."""
    args = [
        "pretrain",
        "--method",
        "rotation",
        "--data",
        world["ds"],
        "--width",
        "0.125",
        "--batch-size",
        "16",
        "--epochs",
        "2",
    ]
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert run_cli(*args, "--out", str(full)).returncode == 0
    killed.mkdir()
    shutil.copy(full / "checkpoint.pt", killed / "checkpoint.pt")
    r = run_cli(*args, "--out", str(killed))
    assert r.returncode == 0, r.stderr
    assert (killed / "backbone.safetensors").read_bytes() == (full / "backbone.safetensors").read_bytes()
    assert (
        json.loads((killed / "meta.json").read_text())["train_time_s"]
        == json.loads((full / "meta.json").read_text())["train_time_s"]
    )
    before = _snapshot(killed)
    again = run_cli(*args, "--out", str(killed))
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert _snapshot(killed) == before


def test_staged_folder_moves_in_only_a_complete_set_and_keeps_other_files(tmp_path):
    from selfsup.core.provenance import staged_folder

    out = tmp_path / "report"
    out.mkdir()
    (out / "index.html").write_text("old page")
    (out / "utility.csv").write_text("old table")
    (out / "figures").mkdir()
    (out / "figures" / "a.png").write_text("old figure")
    (out / "notes.txt").write_text("the user's own file")
    before = _snapshot(out)
    with pytest.raises(RuntimeError):
        with staged_folder(out) as stage:
            (stage / "utility.csv").write_text("new table")
            raise RuntimeError("crash half-way")
    assert _snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no staging folder left behind
    with staged_folder(out) as stage:
        (stage / "utility.csv").write_text("new table")
        (stage / "index.html").write_text("new page")
        (stage / "figures").mkdir()
        (stage / "figures" / "b.png").write_text("new figure")
    assert (out / "index.html").read_text() == "new page" and (out / "utility.csv").read_text() == "new table"
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["b.png"]  # the folder was swapped whole
    assert (out / "notes.txt").read_text() == "the user's own file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_report_that_fails_while_writing_leaves_the_previous_one_whole(world, tmp_path, monkeypatch):
    """Validation passes, then writing fails half-way (here: the HTML page): nothing of the old report changes."""
    from selfsup.report import page as report

    out = tmp_path / "report"
    shutil.copytree(Path(world["w"]) / "report", out)
    before = _snapshot(out)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(report, "_write_html", broken)
    with pytest.raises(OSError):
        report.make_report([Path(world["w"]) / "res_good" / "results.csv"], out, n_boot=10)
    assert _snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_rows_of_two_datasets_or_pretraining_variants_are_not_duplicates():
    from selfsup.analyse.tables import check_results
    from selfsup.core.errors import UserError

    rows = pd.DataFrame(GOOD_ROWS).assign(dataset_hash="a", pretrain_variant="-CV-")
    check_results(pd.concat([rows, rows.assign(dataset_hash="b")], ignore_index=True))  # two datasets
    check_results(
        pd.concat([rows, rows[rows.method != "scratch"].assign(pretrain_variant="TCVL")], ignore_index=True)
    )  # transfer: pretrained on another variant
    with pytest.raises(UserError, match="duplicate result row"):
        check_results(pd.concat([rows, rows.iloc[[3]]], ignore_index=True))
