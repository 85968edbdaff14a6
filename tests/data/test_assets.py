"""Real asset folders (ShapeNetCore v2 layout, DTD-like images) made by the tests, loaded and rendered."""

import numpy as np
import pytest
from conftest import run_cli

from selfsup.core.errors import UserError
from selfsup.data.assets import SHAPENET_SYNSETS, shapenet_index, texture_index
from selfsup.data.dataset import load_dataset
from selfsup.data.render import render_dataset

CUBE = """v -1 -1 -1\nv 1 -1 -1\nv 1 1 -1\nv -1 1 -1\nv -1 -1 1\nv 1 -1 1\nv 1 1 1\nv -1 1 1
f 1 2 3 4\nf 5 8 7 6\nf 1 5 6 2\nf 2 6 7 3\nf 3 7 8 4\nf 5 1 4 8\n"""
PYRAMID = """v -1 0 -1\nv 1 0 -1\nv 1 0 1\nv -1 0 1\nv 0 2 0\nf 1 2 3 4\nf 1 2 5\nf 2 3 5\nf 3 4 5\nf 4 1 5\n"""


def make_shapenet(root, synsets=SHAPENET_SYNSETS):
    for k, synset in enumerate(synsets):
        for m, text in enumerate((CUBE, PYRAMID)):
            d = root / synset / f"model{m}" / "models"
            d.mkdir(parents=True)
            # per-class proportions, so that classes differ
            lines = [
                " ".join(["v", *(f"{float(c) * (1 + 0.3 * ((k + i) % 3)):.3f}" for i, c in enumerate(ln.split()[1:]))])
                if ln.startswith("v ")
                else ln
                for ln in text.splitlines()
            ]
            (d / "model_normalized.obj").write_text("\n".join(lines) + "\n")
    return root


def make_textures(root):
    from PIL import Image

    for name, pattern in (("banded", lambda x, y: (x // 2) % 2), ("chequered", lambda x, y: (x // 2 + y // 2) % 2)):
        (root / "images" / name).mkdir(parents=True)
        arr = np.array([[[255 * pattern(x, y)] * 3 for x in range(16)] for y in range(16)], np.uint8)
        Image.fromarray(arr).save(root / "images" / name / f"{name}_0001.png")
    return root / "images"


def test_indices_are_sorted_and_complete(tmp_path):
    meshes = shapenet_index(make_shapenet(tmp_path / "shapenet"))
    assert len(meshes) == 10 and all(len(m) == 2 and list(m) == sorted(m) for m in meshes)
    assert [p.rsplit("/", 1)[-1] for p in texture_index(make_textures(tmp_path / "dtd"))] == [
        "banded_0001.png",
        "chequered_0001.png",
    ]


def test_shapenet_folder_without_the_synsets_is_an_error_naming_them(tmp_path):
    make_shapenet(tmp_path / "partial", SHAPENET_SYNSETS[:8])
    with pytest.raises(UserError, match="04530566 \\(watercraft\\)"):
        shapenet_index(tmp_path / "partial")
    keep = tmp_path / "out" / "keep.txt"
    keep.parent.mkdir()
    keep.write_text("precious")
    r = run_cli("render", "--count", "4", "--shapenet", str(tmp_path / "partial"), "--out", str(keep.parent))
    assert r.returncode != 0 and "03790512 (motorcycle)" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert keep.read_text() == "precious"
    with pytest.raises(UserError, match="no .jpg or .png"):
        texture_index(tmp_path / "out")


@pytest.mark.parametrize("set_name", ["single", "multi"])
def test_render_with_shapenet_meshes_and_image_textures(tmp_path, set_name):
    shapenet, dtd = make_shapenet(tmp_path / "shapenet"), make_textures(tmp_path / "dtd")
    m = render_dataset(
        tmp_path / "ds",
        set_name=set_name,
        variant="TCVL",
        count=6,
        seed=0,
        resolution=32,
        samples=4,
        progress=False,
        shapenet=shapenet,
        textures=dtd,
    )
    ds = load_dataset(tmp_path / "ds")
    assert m["params"]["shapenet"]["models"] == [2] * 10 and m["params"]["textures"]["images"] == 2
    assert ds.images.shape[0] == 6 and ds.images.std() > 10
    tex = ds.labels.object_texture.explode() if set_name == "multi" else ds.labels.object_texture
    assert set(tex) <= {"image:0", "image:1"}
    models = ds.labels.model_id.explode() if set_name == "multi" else ds.labels.model_id
    assert set(models) <= {0, 1}
    if set_name == "multi":
        assert (ds.dense["instances"] > 0).mean() > 0.02  # the imported meshes are visible in the passes
