"""`selfsup import`: real images (scikit-learn's handwritten digits) as a dataset, and the whole pipeline
on them through `dvc repro` (issue 29)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import BIN, run_cli
from PIL import Image

from selfsup.data.dataset import load_dataset
from selfsup.data.imports import import_images

REPO = Path(__file__).resolve().parents[2]


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images * 255 / 16).round().astype(np.uint8), d.target


def digits_folder(root: Path, per_class: int = 30) -> Path:
    """An ImageFolder tree of real digits: one sub-folder per digit, greyscale PNGs."""
    images, target = _digits()
    for c in range(10):
        folder = root / str(c)
        folder.mkdir(parents=True, exist_ok=True)
        for k in np.flatnonzero(target == c)[:per_class]:
            Image.fromarray(images[k], "L").save(folder / f"{k:04d}.png")
    return root


def test_digits_import_in_the_renders_format_with_stratified_seeded_splits(tmp_path):
    src = digits_folder(tmp_path / "digits")
    m = import_images("imagefolder", src, tmp_path / "ds", resolution=16)
    ds = load_dataset(tmp_path / "ds", verify=True)
    assert ds.images.shape == (300, 16, 16, 3) and ds.images.dtype == np.uint8
    assert {"split", "class_id", "class_name", "source_path", "group", "model_id", "pose_bin"} <= set(ds.labels)
    assert m["classes"] == [str(c) for c in range(10)] and m["conversions"] == {"greyscale": 300}
    assert m["labels"] == ["class"] and len(m["files"]) == 300 and all(len(f["sha256"]) == 64 for f in m["files"])
    per_class = ds.labels.groupby(["class_name", "split"], observed=True).size().unstack()
    assert (per_class["train"] == 21).all() and (per_class["val"] + per_class["test"] == 9).all()  # 70/15/15 %
    # the pixels are the source's, upscaled (a digit's bright strokes stay where they were)
    row = ds.labels.iloc[0]
    source = np.asarray(Image.open(src / row["source_path"]).resize((16, 16), Image.Resampling.LANCZOS))
    assert np.corrcoef(source.ravel(), ds.images[0][..., 0].ravel())[0, 1] > 0.95
    assert (ds.images[..., 0] == ds.images[..., 1]).all()  # greyscale → equal RGB channels
    again = import_images("imagefolder", src, tmp_path / "ds2", resolution=16)
    assert again["dataset_hash"] == m["dataset_hash"]  # same files, same seed: the same dataset
    other = import_images("imagefolder", src, tmp_path / "ds3", resolution=16, seed=1)
    assert other["dataset_hash"] != m["dataset_hash"]
    # a changed source file is a changed dataset
    first = src / m["files"][0]["path"]
    Image.fromarray(255 - np.asarray(Image.open(first)), "L").save(first)
    changed = import_images("imagefolder", src, tmp_path / "ds4", resolution=16)
    assert changed["dataset_hash"] != m["dataset_hash"] and changed["source_digest"] != m["source_digest"]


def test_modes_are_converted_to_rgb_and_counted(tmp_path):
    images, target = _digits()
    src = tmp_path / "mixed"
    for c in (0, 1):
        (src / str(c)).mkdir(parents=True)
        for i, k in enumerate(np.flatnonzero(target == c)[:4]):
            Image.fromarray(images[k], "L").convert("RGB").save(src / str(c) / f"{i}.jpg")
    transparent = np.zeros((8, 8, 4), np.uint8)  # fully transparent: white after compositing
    Image.fromarray(transparent, "RGBA").save(src / "0" / "alpha.png")
    Image.fromarray(images[0], "L").convert("P").save(src / "0" / "palette.png")
    Image.fromarray((np.full((8, 8), 65535)).astype(np.uint16)).save(src / "1" / "deep.png")  # 16-bit white
    Image.fromarray(images[1], "L").save(src / "1" / "b.bmp")
    Image.fromarray(images[2], "L").save(src / "1" / "c.webp")  # WebP stores greyscale as RGB
    Image.fromarray(images[3], "L").save(src / "0" / "d.tiff")
    m = import_images("imagefolder", src, tmp_path / "ds", resolution=8, fit="pad")
    assert m["conversions"] == {"alpha": 1, "palette": 1, "16-bit": 1, "greyscale": 2}, m["conversions"]
    ds = load_dataset(tmp_path / "ds")
    by_name = {Path(p).name: i for i, p in enumerate(ds.labels["source_path"])}
    assert (ds.images[by_name["alpha.png"]] == 255).all() and (ds.images[by_name["deep.png"]] == 255).all()


def test_a_manifest_with_groups_gives_splits_disjoint_by_group_and_duplicates_stay_together(tmp_path):
    src = digits_folder(tmp_path / "digits", per_class=12)
    rows = [f"{p.relative_to(tmp_path)},{p.parent.name},g{int(p.stem) // 3}" for p in sorted(src.rglob("*.png"))]
    dup = src / "3" / "copy.png"
    shutil.copy(sorted((src / "3").iterdir())[0], dup)  # the same bytes twice
    rows.append(f"{dup.relative_to(tmp_path)},3,elsewhere")
    (tmp_path / "m.csv").write_text("path,label,group\n" + "\n".join(rows) + "\n")
    r = run_cli("import", "--from", "csv", str(tmp_path / "m.csv"), "--out", str(tmp_path / "ds"), "--resolution", "8")
    assert r.returncode == 0, r.stderr
    assert "warning: 1 duplicate file(s)" in r.stderr
    labels = load_dataset(tmp_path / "ds").labels
    splits_of_group = labels.groupby("group")["split"].nunique()
    assert (splits_of_group == 1).all()  # no group on two sides of a split
    original = labels[labels["source_sha256"] == labels.iloc[-1]["source_sha256"]]
    assert len(original) == 2 and original["split"].nunique() == 1  # the duplicate sits with its original


def _project(tmp_path: Path, digits: Path) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copytree(REPO / "src", proj / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "dvc.yaml", proj)
    shutil.copytree(digits, proj / "photos")
    params = {
        "datasets": {},
        "imports": {"digits": {"source": "imagefolder", "path": "photos", "resolution": 16, "fit": "crop", "seed": 0}},
        "study": {"inits": ["scratch", "rotation"], "backbones": ["resnet9"], "single": ["digits"], "multi": []},
        "pretrain_single": {"epochs": 1, "batch_size": 16},
        "finetune_single": {"budgets": "10,20", "seeds": "0,1,2", "steps": 4, "epochs": 1, "batch_size": 8},
        "probe": {"methods": ["rotation"], "protocols": ["knn"], "k": 5},
        "report": {"bootstrap": 10},
    }
    from selfsup.core.config import parse, to_yaml

    (proj / "params.yaml").write_text(to_yaml(parse(params)))
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=proj, check=True)
    return proj


def test_a_study_on_real_digits_runs_end_to_end_through_dvc(tmp_path):
    """imports.digits (source: imagefolder) → import@digits → pretrain, finetune, probe, readout, report."""
    proj = _project(tmp_path, digits_folder(tmp_path / "digits", per_class=12))

    def dvc(*args):
        r = subprocess.run([str(BIN / "dvc"), *args], cwd=proj, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        return r.stdout

    dvc("repro")
    manifest = json.loads((proj / "data" / "digits" / "manifest.json").read_text())
    assert manifest["params"]["source"] == "imagefolder" and manifest["counts"]["images"] == 120
    utility = pd.read_csv(proj / "reports" / "utility.csv")
    assert set(utility["method"]) == {"rotation"}
    assert len(utility[utility["protocol"] == "finetune"]) == 2  # two budgets
    assert utility["protocol"].str.startswith("knn").any()  # and the probe's
    results = pd.read_csv(
        proj / "results" / "finetune" / "digits" / "resnet9" / "rotation-classification" / "results.csv"
    )
    assert len(results) == 6 and results["value"].between(0, 1).all()
    readout = pd.read_csv(proj / "results" / "readout" / "digits" / "resnet9" / "rotation" / "readout.csv")
    assert readout.set_index("factor").loc["class", "status"] == "ok"
    assert (readout.set_index("factor").drop("class")["status"] == "not recorded").all()
    assert (proj / "reports" / "index.html").is_file()
    # a changed source folder re-imports (and what depends on it re-runs)
    first = sorted((proj / "photos" / "0").iterdir())[0]
    Image.fromarray(255 - np.asarray(Image.open(first)), "L").save(first)
    status = json.loads(dvc("status", "--json"))
    assert "import@digits" in status


@pytest.mark.parametrize("task", ["pose", "segmentation"])
def test_tasks_whose_labels_the_source_lacks_are_one_line_errors(tmp_path, task):
    src = digits_folder(tmp_path / "digits", per_class=6)
    import_images("imagefolder", src, tmp_path / "ds", resolution=16)
    r = run_cli("finetune", "--task", task, "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "o"))
    assert r.returncode != 0 and "labels, which dataset" in r.stderr and "Traceback" not in r.stderr
