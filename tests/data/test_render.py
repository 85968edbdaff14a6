"""Real Blender renders (tiny: 32×32, 4 samples per pixel)."""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
from conftest import BIN, TINY, run_cli

from selfsup.core.provenance import sha256_file
from selfsup.data.dataset import load_dataset
from selfsup.data.shapes import CLASSES


def test_tiny_render_fills_the_dataset_contract(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    assert ds.images.shape == (64, 32, 32, 3) and ds.images.dtype == np.uint8
    assert ds.images.std() > 10  # not blank: objects and backgrounds differ
    for col in ("split", "class_id", "class_name", "model_id", "pose_bin", "euler_x", "light_angle", "object_r"):
        assert col in ds.labels.columns
    assert set(ds.labels.split) <= {"train", "val", "test"}
    assert ds.labels.class_id.between(0, len(CLASSES) - 1).all()
    assert (ds.labels.pose_bin == 0).all()  # V off
    m = json.loads((tiny_dataset / "manifest.json").read_text())
    assert m["counts"]["images"] == 64 and m["params"]["variant"] == "-C--" and len(m["params"]["renderer"]) == 12
    assert m["sha256"]["images.npy"] == sha256_file(tiny_dataset / "images.npy")
    assert not (tiny_dataset / ".shards").exists()


def test_each_image_shows_its_object_on_the_backdrop(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    img = ds.images[:16].astype(float)
    centre, corner = img[:, 12:20, 12:20].mean((1, 2)), img[:, :4, :4].mean((1, 2))
    assert (np.abs(centre - corner).sum(1) > 5).mean() > 0.75  # the centre is the object, the corner the backdrop


def test_render_killed_with_sigkill_resumes_to_the_same_dataset(tiny_dataset, tmp_path):
    out = tmp_path / "resumed"
    args = [
        str(BIN / "selfsup"),
        "render",
        "--set",
        "single",
        f"--variant={TINY['variant']}",
        "--count",
        "96",
        "--seed",
        str(TINY["seed"]),
        "--resolution",
        str(TINY["resolution"]),
        "--samples",
        str(TINY["samples"]),
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (out / ".shards" / "shard_00000.npz").exists() and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()  # killed before the end
    kept = sorted(p.name for p in (out / ".shards").glob("shard_*.npz"))
    assert "shard_00000.npz" in kept and len(kept) < 3

    r = run_cli(*args[1:])
    assert r.returncode == 0, r.stderr
    resumed = load_dataset(out)
    # the first 64 scenes equal an uninterrupted 64-image render exactly, and so do their pixels up to render noise.
    # Locally the pixels were byte-identical in every run, but one clean-clone CI run saw one shard with another
    # 4-spp noise pattern (cause not found). Measured at these settings: another noise seed moves an image by at
    # most 6.7 levels (mean |diff|), another scene by 9 at least (median 50), so 8 separates the two.
    assert resumed.images.shape[0] == 96
    pd.testing.assert_frame_equal(resumed.labels.iloc[:64].reset_index(drop=True), load_dataset(tiny_dataset).labels)
    _assert_same_pixels_up_to_render_noise(resumed.images[:64], load_dataset(tiny_dataset).images)


def _assert_same_pixels_up_to_render_noise(a: np.ndarray, b: np.ndarray) -> None:
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = np.abs(a - b).mean(axis=(1, 2, 3))
    bad = np.flatnonzero(diff >= 8.0)
    assert not len(bad), (
        f"images {bad.tolist()} differ by {diff[bad].round(1).tolist()} levels; mean brightness "
        f"{a[bad].mean((1, 2, 3)).round(1).tolist()} vs {b[bad].mean((1, 2, 3)).round(1).tolist()}"
    )


def test_bad_render_input_is_one_line_and_keeps_existing_files(tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_text("precious")
    for args, needle in [
        (["--variant=XC--", "--out", str(tmp_path)], "'XC--'"),
        (["--count", "0", "--out", str(tmp_path)], "count 0"),
        (["--set", "triple", "--out", str(tmp_path)], "'triple'"),
    ]:
        r = run_cli("render", *args)
        assert r.returncode != 0
        assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert keep.read_text() == "precious"


def test_unwritable_output_folder_is_a_one_line_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: use a path under a file instead
            target = tmp_path / "afile"
            target.write_text("x")
            out = target / "sub"
        else:
            out = locked / "sub"
        r = run_cli("render", "--count", "4", "--out", str(out))
        assert r.returncode != 0 and "Traceback" not in r.stderr
        assert "not writable" in r.stderr or f"inside {str(target)!r}, which is a file" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    finally:
        locked.chmod(0o700)


def test_two_workers_render_the_same_dataset_as_one(tiny_dataset, tmp_path):
    from selfsup.data.render import render_dataset

    render_dataset(tmp_path / "two", workers=2, progress=False, **TINY)
    two, one = load_dataset(tmp_path / "two"), load_dataset(tiny_dataset)
    pd.testing.assert_frame_equal(two.labels, one.labels)
    _assert_same_pixels_up_to_render_noise(two.images, one.images)


def test_hardest_variant_renders_textures_views_and_lights(tmp_path):
    from selfsup.data.render import render_dataset

    m = render_dataset(
        tmp_path / "tcvl", set_name="single", variant="TCVL", count=12, seed=1, resolution=32, samples=4, progress=False
    )
    ds = load_dataset(tmp_path / "tcvl")
    assert m["params"]["variant"] == "TCVL" and ds.images.std() > 10
    assert (ds.labels.object_texture != "").all() and ds.labels.light_angle.nunique() == 12
    assert (tmp_path / "tcvl" / "contact_sheet.png").is_file()


def test_other_parameters_need_replace_and_nothing_is_lost_without_it(tiny_dataset, tmp_path):
    import shutil

    from selfsup.data.render import render_dataset

    out = tmp_path / "ds"
    shutil.copytree(tiny_dataset, out)
    before = (out / "images.npy").read_bytes()
    r = run_cli(
        "render",
        "--set",
        "single",
        "--variant=-C--",
        "--count",
        "8",
        "--resolution",
        "32",
        "--samples",
        "4",
        "--out",
        str(out),
    )
    assert r.returncode != 0 and "--replace" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert (out / "images.npy").read_bytes() == before and (out / "manifest.json").is_file()
    m = render_dataset(
        out, set_name="single", variant="-C--", count=8, seed=0, resolution=32, samples=4, progress=False, replace=True
    )
    assert m["counts"]["images"] == 8 and load_dataset(out).images.shape[0] == 8


@pytest.fixture(scope="module")
def tiny_multi(tmp_path_factory):
    from selfsup.data.render import render_dataset

    out = tmp_path_factory.mktemp("multi") / "tiny"
    render_dataset(out, set_name="multi", variant="-CV-", count=6, seed=0, resolution=48, samples=4, progress=False)
    return out


def test_tiny_multi_render_has_dense_labels_that_match_the_objects(tiny_multi):
    from selfsup.data.scene import MULTI_OBJECTS

    ds = load_dataset(tiny_multi)
    assert ds.images.shape == (6, 48, 48, 3) and ds.images.dtype == np.uint8
    seg, depth, inst = ds.dense["segmentation"], ds.dense["depth"], ds.dense["instances"]
    assert seg.shape == depth.shape == inst.shape == (6, 48, 48)
    assert seg.dtype == np.uint8 and depth.dtype == np.float16 and inst.dtype == np.uint8
    for i, row in ds.labels.iterrows():
        classes = np.asarray(row.class_id)
        assert row.n_objects == len(classes) == MULTI_OBJECTS
        assert set(np.unique(inst[i])) <= set(range(MULTI_OBJECTS + 1))
        assert len(np.unique(inst[i])) >= 3  # background and at least two visible objects
        for k in np.unique(inst[i]):  # each instance's pixels carry its object's class
            expected = 0 if k == 0 else classes[k - 1] + 1
            assert (seg[i][inst[i] == k] == expected).all()
        on_objects = depth[i][inst[i] > 0].astype(float)
        assert (on_objects > 0).all() and np.isfinite(on_objects).all()
        assert on_objects.mean() < depth[i][inst[i] == 0].astype(float).mean()  # objects are in front of the backdrop
    m = json.loads((tiny_multi / "manifest.json").read_text())
    assert set(m["sha256"]) >= {"images.npy", "segmentation.npy", "depth.npy", "instances.npy", "labels.parquet"}
    assert "normals.npy" in m["sha256"]
    assert sum(m["counts"]["classes"].values()) == 6 * MULTI_OBJECTS


def test_tiny_multi_render_has_unit_surface_normals_in_camera_axes(tiny_multi):
    """normals.npy from Cycles' normal pass: unit vectors facing the camera; the backdrop, a plane, has
    one normal (its +x axis seen from the camera at (1, 0, 0.4)), the objects many."""
    ds = load_dataset(tiny_multi)
    normals, inst = ds.dense["normals"], ds.dense["instances"]
    assert normals.shape == (6, 48, 48, 3) and normals.dtype == np.float16
    n = normals.astype(np.float64)
    length = np.linalg.norm(n, axis=-1)
    assert np.abs(length - 1).max() < 0.01  # every pixel hits the backdrop or an object
    backdrop = n[inst == 0]
    # world +x seen by a camera at (1, 0, 0.4) looking down at the origin: facing it, tilted below its up axis
    view = np.array([0.0, -0.4, 1.0]) / np.linalg.norm([1.0, 0.4])
    assert np.abs(np.median(backdrop, axis=0) - view).max() < 0.02
    objects = n[inst > 0]
    assert objects[:, 2].mean() > 0.3 and objects.std(0).min() > 0.15  # mostly facing the camera, varied


def test_a_task_that_does_not_fit_the_dataset_is_a_one_line_error(tiny_multi, tmp_path):
    r = run_cli("finetune", "--task", "classification", "--data", str(tiny_multi), "--out", str(tmp_path / "o"))
    assert r.returncode != 0 and "single-object dataset" in r.stderr and "Traceback" not in r.stderr


def _colour_histogram_accuracy(ds) -> float:
    """Ridge classifier on 64-bin RGB histograms (sqrt), trained on the first 250 images, tested on the rest."""
    q = np.asarray(ds.images).astype(np.int64) // 64
    idx = q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]
    x = np.sqrt(np.stack([np.bincount(i.ravel(), minlength=64) for i in idx]) / idx[0].size)
    x = np.c_[x, np.ones(len(x))]
    y = ds.labels.class_id.to_numpy()
    tr, te = slice(0, 250), slice(250, None)
    w = np.linalg.solve(x[tr].T @ x[tr] + 1e-2 * np.eye(x.shape[1]), x[tr].T @ np.eye(10)[y[tr]])
    return float(((x[te] @ w).argmax(1) == y[te]).mean())


def test_colour_tells_the_class_only_when_the_colour_factor_is_off(tmp_path):
    """Rendered pixels, not just scene specs: with C off a colour-histogram classifier beats chance
    (0.1) clearly; with C on it does not (measured 0.47 vs 0.15 on these 150 test images; 0.83 with
    the evenly spaced class hues of before, which made C off nearly colour-labelled)."""
    from selfsup.data.render import render_dataset

    acc = {}
    for v in ("----", "-C--"):
        render_dataset(tmp_path / v, variant=v, count=400, seed=0, resolution=24, samples=2, progress=False)
        acc[v] = _colour_histogram_accuracy(load_dataset(tmp_path / v))
    assert acc["----"] > 0.35 and acc["-C--"] < 0.25, acc


def test_the_dataset_hash_is_the_content_not_the_parquet_writers_bytes():
    """labels.parquet embeds the writing pyarrow's and pandas' versions: two machines with other
    versions write other bytes for the same labels. The dataset hash reads the label rows instead."""
    import numpy as np

    from selfsup.data.dataset import content_hash

    rows = [{"index": 0, "split": "train", "class_id": np.int64(3), "euler_x": 0.25}, {"index": 1, "split": "test"}]
    sha = {"images.npy": "a" * 64, "labels.parquet": "b" * 64}
    base = content_hash(sha, rows)
    assert content_hash({**sha, "labels.parquet": "c" * 64}, rows) == base  # other writer, same labels
    assert content_hash({**sha, "images.npy": "d" * 64}, rows) != base  # other pixels
    assert content_hash(sha, [{**rows[0], "class_id": 4}, rows[1]]) != base  # other labels


_BREAK_THE_BACKDROP = """
import json, sys
import numpy as np
from selfsup.data.render import blender
from selfsup.data.scene import Variant, sample_scenes

how = sys.argv[1]
r = blender.SingleObjectRenderer(32, 4, threads=1)
a, b = sample_scenes("single", 2, Variant.parse("-CV-"), seed=5)
r.render(a)
before = r.render(b)["image"]
if how == "hidden":  # a camera ray through the backdrop reaches the world
    r.backdrop.hide_render = True
else:  # the backdrop's shader goes black: its material has no surface output any more
    tree = r.backdrop.data.materials[0].node_tree
    tree.links.remove(tree.nodes["Material Output"].inputs["Surface"].links[0])
after = r.render(b)["image"]
print(json.dumps({"rebuilds": r.rebuilds, "same": bool((before == after).all()), "mean": float(after.mean())}))
"""


@pytest.mark.parametrize("how", ["hidden", "black"])
def test_a_render_that_lost_its_backdrop_is_redone_in_a_fresh_scene(how):
    # one default study lost the backdrop of 188 single-set images in a row: the renderer now checks
    # every render (object-index and depth passes) and renders it again in a freshly built scene
    p = subprocess.run(
        [str(BIN / "python"), "-c", _BREAK_THE_BACKDROP, how], capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["rebuilds"] == 1 and got["same"], got
    assert "rendered again" in p.stderr


def test_a_denoised_render_records_its_setting(tmp_path):
    r = run_cli(
        "render", "--variant=-CV-", "--count", "6", "--resolution", "32", "--samples", "2", "--denoise", "fast",
        "--out", str(tmp_path / "d"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["params"]["samples"] == 2 and manifest["params"]["denoise"] == "fast"
    assert load_dataset(tmp_path / "d").images.std() > 10


def test_gpu_rendering_without_a_gpu_is_one_clear_line(tmp_path):
    from selfsup.data.render.jobs import gpu_backend

    args = ["render", "--count", "4", "--resolution", "32", "--samples", "1", "--device", "gpu"]
    r = run_cli(*args, "--out", str(tmp_path / "g"))
    if gpu_backend() is not None:  # a machine with a GPU renders on it
        assert r.returncode == 0, r.stderr
        assert json.loads((tmp_path / "g" / "manifest.json").read_text())["params"]["device"] == "gpu"
        return
    assert r.returncode != 0 and not (tmp_path / "g").exists()
    assert r.stderr.strip().splitlines() == [
        "error: --device gpu: Blender finds no GPU here (OptiX, CUDA, HIP or oneAPI); use --device cpu"
    ]


_MIRROR_RENDER = """
import dataclasses, json, sys
import numpy as np
from selfsup.data.render import blender
from selfsup.data.scene import Variant, pose_bin, sample_scenes
from selfsup.data.shapes import CLASSES

r = blender.SingleObjectRenderer(48, 16, threads=1)
base = next(s for s in sample_scenes("single", 400, Variant.parse("----"), seed=0) if CLASSES[s.class_id] == "lamp")
# a lamp (turned about its own axis it is the same lamp, so mirroring it gives the same lamp) tipped
# so that its up axis points to the image's left (−y), lit from the side
a = dataclasses.replace(base, euler=(0.9, 0.2, -0.4), light_angle=-0.5, object_texture="", background_texture="")
# the mirror image of that scene: Euler angles (−x, y, −z), the light mirrored too
b = dataclasses.replace(a, euler=(-0.9, 0.2, 0.4), light_angle=0.5)
ia, ib = r.render(a)["image"], r.render(b)["image"]
np.savez(sys.argv[1], a=ia, b=ib)
print(json.dumps({"bin_a": pose_bin(a.euler), "bin_b": pose_bin(b.euler)}))
"""


def test_a_flipped_render_of_an_object_pointing_left_carries_the_right_bin(tmp_path):
    """Labels follow the flip, on real renders: the horizontal flip of a render whose object's up axis
    points left (bin 3) is (up to Cycles noise and the fixed sun) the render of the mirrored scene,
    whose bin is 4; and the paper's finetuning augmentation gives every flipped image that bin."""
    import torch

    from selfsup.data.augment import finetune_view, to_input
    from selfsup.evaluate.tasks import get_task

    p = subprocess.run(
        [str(BIN / "python"), "-c", _MIRROR_RENDER, str(tmp_path / "r.npz")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    bins = json.loads(p.stdout.strip().splitlines()[-1])
    assert (bins["bin_a"], bins["bin_b"]) == (3, 4)
    with np.load(tmp_path / "r.npz") as z:
        a, b = z["a"].astype(float), z["b"].astype(float)
    flipped, same = np.abs(a[:, ::-1] - b).mean(), np.abs(a - b).mean()
    assert flipped < 0.2 * same, (flipped, same)  # the flip of A is B (1.1 vs 13.6 grey levels), A is not

    pose = get_task("pose")
    x = to_input(torch.from_numpy(np.stack([z.astype(np.uint8) for z in [a] * 32])))
    y = torch.full((32,), 3)
    g = torch.Generator().manual_seed(0)
    _, y_aug = finetune_view(x, y, g, pose.dense, pose.mirrored)
    flip = torch.rand(32, generator=torch.Generator().manual_seed(0)) < 0.5  # the augmentation's first draw
    assert 0 < int(flip.sum()) < 32
    assert y_aug.tolist() == torch.where(flip, 4, 3).tolist()
