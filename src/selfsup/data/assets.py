"""Optional real assets as plain data: a ShapeNetCore v2 folder (meshes) and a DTD folder (texture images).

Only file listings live here (no ``bpy``); :mod:`selfsup.data.render` loads the files. Listings are
sorted, so model and texture ids do not depend on the file system's order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selfsup.core.errors import UserError
from selfsup.data.shapes import CLASSES

# ShapeNetCore v2 synset ids of the ten classes, in CLASSES order
SHAPENET_SYNSETS = (
    "02691156",
    "02828884",
    "02933112",
    "02958343",
    "03001627",
    "03636649",
    "04256520",
    "04379243",
    "04530566",
    "03790512",
)
SHAPENET_MESH = Path("models") / "model_normalized.obj"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Assets:
    """Where meshes and textures come from: procedural (None) or real files."""

    meshes: tuple[tuple[str, ...], ...] | None = None  # per class: OBJ paths, index = model id
    textures: tuple[str, ...] | None = None  # image paths, index = texture id

    def models_per_class(self, class_id: int, default: int) -> int:
        return default if self.meshes is None else len(self.meshes[class_id])


def shapenet_index(root: str | Path) -> tuple[tuple[str, ...], ...]:
    """The OBJ files of the ten classes under a ShapeNetCore v2 folder (``SYNSET/MODEL/models/...``)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"ShapeNet folder {str(root)!r} does not exist")
    missing = [f"{s} ({c})" for s, c in zip(SHAPENET_SYNSETS, CLASSES) if not (root / s).is_dir()]
    if missing:
        raise UserError(f"ShapeNet folder {str(root)!r} lacks synset folder(s) {', '.join(missing)}")
    meshes = []
    for synset, name in zip(SHAPENET_SYNSETS, CLASSES):
        objs = sorted(str(p) for p in (root / synset).glob(f"*/{SHAPENET_MESH.as_posix()}"))
        if len(objs) < 2:
            raise UserError(
                f"ShapeNet synset {synset} ({name}) in {str(root)!r} has {len(objs)} model(s) with "
                f"{SHAPENET_MESH.as_posix()}; need at least 2 (one for training, one held out)"
            )
        meshes.append(tuple(objs))
    return tuple(meshes)


def texture_index(root: str | Path) -> tuple[str, ...]:
    """The texture images under a folder such as DTD's ``images/`` (any depth, jpg/png)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"texture folder {str(root)!r} does not exist")
    images = sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise UserError(f"texture folder {str(root)!r} holds no .jpg or .png images")
    return tuple(images)
