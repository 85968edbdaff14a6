"""Scene descriptions as plain data: dataset variants, model-id splits, scene sampling, pose bins.

Nothing here imports ``bpy``; :mod:`selfsup.data.render` turns a :class:`SingleScene` into pixels.
Sampling is deterministic per image (``seed``, ``index``), so the first N scenes of a larger
dataset equal a dataset of N, whatever the number of render workers.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import asdict, dataclass

import numpy as np

from selfsup.core.errors import UserError
from selfsup.data.assets import Assets
from selfsup.data.shapes import CLASSES, MODELS_PER_CLASS

FACTORS = "TCVL"
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)  # of images; val and test use held-out model ids only
TRAIN_MODEL_FRACTION = 0.8
CANONICAL_EULER = (0.0, 0.0, -math.pi / 6)  # a three-quarter view that shows each class's parts
VIEW_SIGMA = 0.5  # rad per axis when V is on
POSE_BINS = ("up", "forward", "backward", "left", "right")
# "up" when the up axis is within this angle of vertical: the 20 % quantile of that angle under the V
# distribution (CANONICAL_EULER + N(0, VIEW_SIGMA²) per axis; 4M draws), so that the five bins are
# evenly filled as the paper chose them (π/8 put 27 % of the images in bin 0)
UP_ANGLE = 0.333
# the bin of a left-right mirrored image: the camera looks along −x, so a horizontal flip maps the
# world's y to −y (the mirrored Euler angles are (−x, y, −z)): left (−y) and right (+y) swap
MIRRORED_POSE_BIN = (0, 1, 2, 4, 3)
TEXTURES = ("noise", "wave", "checker", "brick", "magic", "gradient", "voronoi")


@dataclass(frozen=True)
class Variant:
    """The four factors of variation; each True means the hard version (the paper's letters)."""

    texture: bool = False
    colour: bool = False
    viewpoint: bool = False
    lighting: bool = False

    @classmethod
    def parse(cls, name: str) -> Variant:
        """``'TC--'`` → texture and random colour on, fixed view and light."""
        if len(name) != 4 or any(ch not in (f, "-") for ch, f in zip(name, FACTORS)):
            raise UserError(
                f"invalid variant {name!r}: use four letters from 'TCVL' in that order, '-' for off (e.g. '-C--')"
            )
        return cls(*(ch != "-" for ch in name))

    @property
    def name(self) -> str:
        return "".join(
            f if on else "-" for f, on in zip(FACTORS, (self.texture, self.colour, self.viewpoint, self.lighting))
        )

    @classmethod
    def try_parse(cls, name: str) -> Variant | None:
        """The variant named ``name``, or None when it names none (an empty or foreign value)."""
        try:
            return cls.parse(name)
        except UserError:
            return None

    def switched_on(self) -> list[tuple[str, Variant]]:
        """For every factor that is off: (its letter, this variant with that factor on)."""
        flags = [self.texture, self.colour, self.viewpoint, self.lighting]
        return [
            (letter, Variant(*(flags[:i] + [True] + flags[i + 1 :])))
            for i, letter in enumerate(FACTORS)
            if not flags[i]
        ]


def model_split(class_id: int, n_models: int = MODELS_PER_CLASS) -> dict[str, np.ndarray]:
    """Fixed split of a class's model ids: 80 % train, 10 % val, 10 % test (same for every variant).
    With very few models (real assets) val and test share the held-out ones; train never does."""
    perm = np.random.default_rng([class_id, 80_20]).permutation(n_models)
    n_train = max(1, min(n_models - 1, int(n_models * TRAIN_MODEL_FRACTION)))
    held = perm[n_train:]
    val, test = held[: len(held) // 2], held[len(held) // 2 :]
    return {"train": np.sort(perm[:n_train]), "val": np.sort(val if len(val) else held), "test": np.sort(test)}


_MODEL_SPLITS = [model_split(c) for c in range(len(CLASSES))]


def _model_pool(class_id: int, split: str, assets: Assets) -> np.ndarray:
    if assets.meshes is None:
        return _MODEL_SPLITS[class_id][split]
    return model_split(class_id, len(assets.meshes[class_id]))[split]


def _texture(rng: np.random.Generator, assets: Assets) -> str:
    """A procedural texture name, or ``image:K`` for the K-th image of the texture folder."""
    if assets.textures is None:
        return str(rng.choice(TEXTURES))
    return f"image:{int(rng.integers(len(assets.textures)))}"


# C off, as the paper describes it ("a random hue is assigned to each class … a new color is chosen by
# sampling from a normal distribution around the corresponding hue") with the released renderer's
# spread: each class has a random HSV colour (h, s, v); an image's colour is (h, 0.8 s + 0.2,
# 0.4 v + 0.6) plus Gaussian noise of s.d. 0.06 on hue and 0.2 on saturation and value, so the
# classes' colour distributions overlap. The released code drew its table per dataset; ours is one
# fixed table, the same for every dataset, so that a backbone pretrained on one variant meets the
# same class colours on another (transfer).
CLASS_HSV = np.random.default_rng(2020).uniform(0, 1, (len(CLASSES), 3))
HUE_SD, SAT_VALUE_SD = 0.06, 0.2


@dataclass(frozen=True)
class SingleScene:
    """One single-object image: everything the renderer needs and every label we keep."""

    index: int
    split: str
    class_id: int
    model_id: int
    euler: tuple[float, float, float]
    stretch: tuple[float, float, float]
    light_angle: float
    object_rgb: tuple[float, float, float]
    background_rgb: tuple[float, float, float]
    object_texture: str  # "" for flat colour
    background_texture: str
    texture_scale: float
    texture_seed: float

    @property
    def class_name(self) -> str:
        return CLASSES[self.class_id]

    @property
    def pose_bin(self) -> int:
        return pose_bin(self.euler)

    def label_row(self) -> dict:
        """Flat label columns for ``labels.parquet``."""
        d = asdict(self)
        row = {
            "index": self.index,
            "split": self.split,
            "class_id": self.class_id,
            "class_name": self.class_name,
            "model_id": self.model_id,
            "pose_bin": self.pose_bin,
        }
        for k in ("euler", "stretch"):
            row.update({f"{k}_{a}": float(v) for a, v in zip("xyz", d[k])})
        for k in ("object_rgb", "background_rgb"):
            row.update({f"{k[:-4]}_{c}": float(v) for c, v in zip("rgb", d[k])})
        row.update(
            light_angle=self.light_angle,
            object_texture=self.object_texture,
            background_texture=self.background_texture,
            texture_scale=self.texture_scale,
            texture_seed=self.texture_seed,
        )
        return row


def euler_to_matrix(euler) -> np.ndarray:
    """Blender's XYZ Euler convention: R = Rz @ Ry @ Rx."""
    x, y, z = euler
    cx, sx, cy, sy, cz, sz = math.cos(x), math.sin(x), math.cos(y), math.sin(y), math.cos(z), math.sin(z)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def pose_bin(euler) -> int:
    """Where the object's up axis points, seen from the camera on +x: 0 up (within ``UP_ANGLE`` of
    vertical), else by its horizontal direction 1 forward (+x, towards the camera), 2 backward,
    3 left (−y, the image's left), 4 right (+y). Rotation about the up axis is ignored."""
    c = euler_to_matrix(euler) @ np.array([0.0, 0.0, 1.0])
    theta = math.atan2(math.hypot(c[0], c[1]), c[2])
    if theta < UP_ANGLE:
        return 0
    if abs(c[0]) >= abs(c[1]):
        return 1 if c[0] > 0 else 2
    return 4 if c[1] > 0 else 3


def _class_colour(rng: np.random.Generator, class_id: int) -> tuple[float, float, float]:
    h, s, v = CLASS_HSV[class_id]
    h = (h + rng.normal(0, HUE_SD)) % 1.0
    s = float(np.clip(0.8 * s + 0.2 + rng.normal(0, SAT_VALUE_SD), 0.0, 1.0))
    v = float(np.clip(0.4 * v + 0.6 + rng.normal(0, SAT_VALUE_SD), 0.0, 1.0))
    return tuple(float(x) for x in colorsys.hsv_to_rgb(h, s, v))


def sample_single_scene(index: int, variant: Variant, seed: int, assets: Assets = Assets()) -> SingleScene:
    """The scene of image ``index`` of a single-object dataset (deterministic in seed and index)."""
    rng = np.random.default_rng([seed, index, 1])
    split = SPLITS[int(rng.choice(3, p=SPLIT_FRACTIONS))]
    class_id = int(rng.integers(len(CLASSES)))
    model_id = int(rng.choice(_model_pool(class_id, split, assets)))
    stretch = tuple(float(v) for v in np.clip(1 + 0.1 * rng.normal(size=3), 0.5, 1.5))
    noise = rng.normal(0, VIEW_SIGMA, size=3) if variant.viewpoint else np.zeros(3)
    euler = tuple(float(c + n) for c, n in zip(CANONICAL_EULER, noise))
    light_angle = float(-0.5 + (2.0 * rng.normal() if variant.lighting else 0.0))
    if variant.colour:
        obj_rgb = tuple(float(v) for v in rng.uniform(0, 1, 3))
    else:
        obj_rgb = _class_colour(rng, class_id)
    bg_rgb = tuple(float(v) for v in rng.uniform(0.1, 0.9, 3))
    if variant.texture:
        obj_tex, bg_tex = _texture(rng, assets), _texture(rng, assets)
    else:
        obj_tex = bg_tex = ""
    return SingleScene(
        index,
        split,
        class_id,
        model_id,
        euler,
        stretch,
        light_angle,
        obj_rgb,
        bg_rgb,
        obj_tex,
        bg_tex,
        float(rng.uniform(2.0, 8.0)),
        float(rng.uniform(0, 100)),
    )


def sample_single_scenes(count: int, variant: Variant, seed: int) -> list[SingleScene]:
    """All scenes of a single-object dataset of ``count`` images."""
    return sample_scenes("single", count, variant, seed)


# ---------------------------------------------------------------- multi-object set

MULTI_OBJECTS = 4
MULTI_EXTENT = 0.36  # largest side of each object (the single set uses 0.56 for one centred object)
WALK_STEP, WALK_MIN_SPACING, WALK_SCALE = 1.75, 1.25, 5.0  # the paper's random walk, in its units


@dataclass(frozen=True)
class PlacedObject:
    """One object of a multi-object scene; ``location`` is its centre in world coordinates."""

    class_id: int
    model_id: int
    euler: tuple[float, float, float]
    stretch: tuple[float, float, float]
    location: tuple[float, float, float]
    rgb: tuple[float, float, float]
    texture: str


@dataclass(frozen=True)
class MultiScene:
    """One multi-object image. Instance k (1-based in the instance map) is ``objects[k-1]``."""

    index: int
    split: str
    objects: tuple[PlacedObject, ...]
    light_angle: float
    background_rgb: tuple[float, float, float]
    background_texture: str
    texture_scale: float
    texture_seed: float

    def label_row(self) -> dict:
        """One row per image; per-object labels are lists in instance order."""
        objs = self.objects
        return {
            "index": self.index,
            "split": self.split,
            "n_objects": len(objs),
            "class_id": [o.class_id for o in objs],
            "class_name": [CLASSES[o.class_id] for o in objs],
            "model_id": [o.model_id for o in objs],
            "pose_bin": [pose_bin(o.euler) for o in objs],
            "euler": [list(o.euler) for o in objs],
            "stretch": [list(o.stretch) for o in objs],
            "location": [list(o.location) for o in objs],
            "object_rgb": [list(o.rgb) for o in objs],
            "object_texture": [o.texture for o in objs],
            "light_angle": self.light_angle,
            "background_r": self.background_rgb[0],
            "background_g": self.background_rgb[1],
            "background_b": self.background_rgb[2],
            "background_texture": self.background_texture,
            "texture_scale": self.texture_scale,
            "texture_seed": self.texture_seed,
        }


def random_walk_positions(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 2) object positions on the ground plane: a random walk with steps of 1.75 ± 10 % that
    keeps 1.25 between objects (10 tries per step), centred and scaled by 1/5."""
    pts = [np.zeros(2)]
    while len(pts) < n:
        for _ in range(10):
            angle = rng.uniform(0, 2 * math.pi)
            cand = pts[-1] + WALK_STEP * rng.uniform(0.9, 1.1) * np.array([math.cos(angle), math.sin(angle)])
            if min(np.linalg.norm(cand - p) for p in pts) >= WALK_MIN_SPACING:
                break
        pts.append(cand)
    arr = np.array(pts)
    return (arr - arr.mean(0)) / WALK_SCALE


def sample_multi_scene(
    index: int, variant: Variant, seed: int, assets: Assets = Assets(), n_objects: int = MULTI_OBJECTS
) -> MultiScene:
    """The scene of image ``index`` of a multi-object dataset (deterministic in seed and index)."""
    rng = np.random.default_rng([seed, index, 2])
    split = SPLITS[int(rng.choice(3, p=SPLIT_FRACTIONS))]
    xy = random_walk_positions(rng, n_objects)
    objects = []
    for k in range(n_objects):
        class_id = int(rng.integers(len(CLASSES)))  # uniform, with replacement
        model_id = int(rng.choice(_model_pool(class_id, split, assets)))
        stretch = tuple(float(v) for v in np.clip(1 + 0.1 * rng.normal(size=3), 0.5, 1.5))
        noise = rng.normal(0, VIEW_SIGMA, size=3) if variant.viewpoint else np.zeros(3)
        euler = tuple(float(c + n) for c, n in zip(CANONICAL_EULER, noise))
        rgb = tuple(float(v) for v in rng.uniform(0, 1, 3)) if variant.colour else _class_colour(rng, class_id)
        texture = _texture(rng, assets) if variant.texture else ""
        location = (float(xy[k, 0]), float(xy[k, 1]), float(rng.normal(0, 0.05)))
        objects.append(PlacedObject(class_id, model_id, euler, stretch, location, rgb, texture))
    light_angle = float(-0.5 + (2.0 * rng.normal() if variant.lighting else 0.0))
    bg_rgb = tuple(float(v) for v in rng.uniform(0.1, 0.9, 3))
    bg_tex = _texture(rng, assets) if variant.texture else ""
    return MultiScene(
        index,
        split,
        tuple(objects),
        light_angle,
        bg_rgb,
        bg_tex,
        float(rng.uniform(2.0, 8.0)),
        float(rng.uniform(0, 100)),
    )


def sample_scenes(set_name: str, count: int, variant: Variant, seed: int, assets: Assets = Assets()) -> list:
    """All scenes of a dataset of the ``single`` or ``multi`` set."""
    if count <= 0:
        raise UserError(f"invalid count {count}: must be at least 1")
    sample = {"single": sample_single_scene, "multi": sample_multi_scene}[set_name]
    return [sample(i, variant, seed, assets) for i in range(count)]
