"""Procedural object models as plain data: a class name and a model id give a list of parts.

No ``bpy`` here: the render module turns parts into meshes. Objects are built Z-up with their
front facing +x. The same (class, model id) always gives the same shape, whatever the dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CLASSES = (
    "airplane",
    "bench",
    "cabinet",
    "car",
    "chair",
    "lamp",
    "sofa",
    "table",
    "watercraft",
    "motorcycle",
)
MODELS_PER_CLASS = 1000


@dataclass(frozen=True)
class Part:
    """A primitive: ``box`` (size = full extents), ``cyl`` / ``cone`` (size = diameters and length
    along ``axis``; a cone's far end is ``taper`` times as wide) or ``sphere`` (size = diameters)."""

    kind: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    axis: str = "z"
    taper: float = 1.0


def _box(c, s) -> Part:
    return Part("box", tuple(map(float, c)), tuple(map(float, s)))


def _cyl(c, diameter, length, axis="z", taper=1.0) -> Part:
    d, L = float(diameter), float(length)
    size = {"x": (L, d, d), "y": (d, L, d), "z": (d, d, L)}[axis]
    return Part("cyl" if taper == 1.0 else "cone", tuple(map(float, c)), size, axis, float(taper))


def _legs(rng, w, d, h, thick) -> list[Part]:
    """Four legs under a rectangle of width ``w`` (y) and depth ``d`` (x), ``h`` tall."""
    inset = rng.uniform(0.0, 0.1)
    return [
        _box(((d / 2 - inset * d) * sx, (w / 2 - inset * w) * sy, h / 2), (thick, thick, h))
        for sx in (-1, 1)
        for sy in (-1, 1)
    ]


def airplane(rng: np.random.Generator) -> list[Part]:
    L = rng.uniform(1.6, 2.2)
    fd = rng.uniform(0.18, 0.28)
    span = rng.uniform(1.4, 2.2)
    chord = rng.uniform(0.25, 0.45)
    wx = rng.uniform(-0.15, 0.15)
    parts = [
        _cyl((0, 0, 0), fd, L, "x"),
        _cyl((L / 2 + 0.1, 0, 0), fd, 0.2, "x", taper=0.3),  # nose
        _box((wx, 0, -fd * 0.2), (chord, span, 0.04)),
        _box((-L / 2 + 0.12, 0, fd * 0.9), (0.22, 0.04, rng.uniform(0.3, 0.5))),  # fin
        _box((-L / 2 + 0.1, 0, fd * 0.3), (0.16, span * 0.35, 0.03)),  # stabiliser
    ]
    if rng.random() < 0.6:  # engines under the wings
        for sy in (-1, 1):
            parts.append(_cyl((wx + 0.05, sy * span * 0.25, -fd * 0.55), 0.1, 0.3, "x"))
    return parts


def bench(rng: np.random.Generator) -> list[Part]:
    w, d = rng.uniform(1.4, 2.2), rng.uniform(0.35, 0.5)
    h = rng.uniform(0.35, 0.5)
    parts = [_box((0, 0, h), (d, w, 0.06))]
    if rng.random() < 0.5:
        parts += _legs(rng, w, d, h, 0.06)
    else:  # two slab sides
        parts += [_box((0, sy * (w / 2 - 0.05), h / 2), (d, 0.06, h)) for sy in (-1, 1)]
    if rng.random() < 0.7:  # backrest
        bh = rng.uniform(0.3, 0.5)
        parts.append(_box((-d / 2 + 0.03, 0, h + bh / 2 + 0.05), (0.05, w, bh * 0.6)))
    return parts


def cabinet(rng: np.random.Generator) -> list[Part]:
    w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.4, 0.6), rng.uniform(0.9, 1.8)
    parts = [_box((0, 0, h / 2), (d, w, h))]
    rows = int(rng.integers(1, 5))
    cols = int(rng.integers(1, 3))
    for r in range(rows):
        for c in range(cols):
            pz = h * (r + 0.5) / rows
            py = w * ((c + 0.5) / cols - 0.5)
            parts.append(_box((d / 2 + 0.01, py, pz), (0.02, w / cols * 0.85, h / rows * 0.85)))
            parts.append(
                _box(
                    (d / 2 + 0.04, py + w / cols * 0.3 * (1 if c % 2 else -1) * (cols > 1), pz),
                    (0.04, 0.04, 0.12 if rows < 3 else 0.04),
                )
            )
    return parts


def car(rng: np.random.Generator) -> list[Part]:
    L, w = rng.uniform(1.6, 2.3), rng.uniform(0.7, 0.9)
    bh = rng.uniform(0.25, 0.4)
    wd = rng.uniform(0.3, 0.42)
    z0 = wd * 0.5
    ch = rng.uniform(0.25, 0.35)
    cl = L * rng.uniform(0.4, 0.6)
    cx = rng.uniform(-0.2, 0.1) * L
    parts = [_box((0, 0, z0 + bh / 2), (L, w, bh)), _box((cx, 0, z0 + bh + ch / 2), (cl, w * 0.85, ch))]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(_cyl((sx * L * 0.32, sy * w / 2, z0), wd, 0.14, "y"))
    return parts


def chair(rng: np.random.Generator) -> list[Part]:
    w, d, h = rng.uniform(0.45, 0.6), rng.uniform(0.45, 0.6), rng.uniform(0.4, 0.5)
    bh = rng.uniform(0.4, 0.7)
    parts = [_box((0, 0, h), (d, w, 0.06)), _box((-d / 2 + 0.03, 0, h + bh / 2), (0.05, w, bh))]
    parts += _legs(rng, w, d, h, 0.05)
    if rng.random() < 0.35:  # armrests
        parts += [_box((0, sy * w / 2, h + 0.2), (d, 0.05, 0.04)) for sy in (-1, 1)]
        parts += [_box((d / 2 - 0.03, sy * w / 2, h + 0.1), (0.04, 0.04, 0.2)) for sy in (-1, 1)]
    return parts


def lamp(rng: np.random.Generator) -> list[Part]:
    ph = rng.uniform(0.8, 1.5)
    bd = rng.uniform(0.3, 0.5)
    sd = rng.uniform(0.35, 0.6)
    sh = rng.uniform(0.25, 0.4)
    parts = [_cyl((0, 0, 0.03), bd, 0.06), _cyl((0, 0, ph / 2), 0.05, ph)]
    taper = rng.choice([0.5, 0.7, 1.0])  # shade shape: cone, truncated cone or drum
    parts.append(_cyl((0, 0, ph + sh * 0.3), sd, sh, "z", taper=float(taper)))
    return parts


def sofa(rng: np.random.Generator) -> list[Part]:
    w, d = rng.uniform(1.5, 2.2), rng.uniform(0.7, 0.9)
    sh = rng.uniform(0.35, 0.45)
    bh = rng.uniform(0.35, 0.5)
    aw = rng.uniform(0.12, 0.22)
    parts = [_box((0, 0, sh / 2), (d, w, sh)), _box((-d / 2 + 0.1, 0, sh + bh / 2), (0.2, w, bh))]
    arm_h = sh + rng.uniform(0.1, 0.25)
    parts += [_box((0, sy * (w / 2 - aw / 2), arm_h / 2), (d, aw, arm_h)) for sy in (-1, 1)]
    seats = int(rng.integers(1, 4))
    for s in range(seats):  # cushions
        py = (w - 2 * aw) * ((s + 0.5) / seats - 0.5)
        parts.append(_box((0.05, py, sh + 0.05), (d - 0.25, (w - 2 * aw) / seats * 0.95, 0.1)))
    return parts


def table(rng: np.random.Generator) -> list[Part]:
    w, d, h = rng.uniform(1.0, 1.8), rng.uniform(0.6, 1.0), rng.uniform(0.6, 0.8)
    parts = [_box((0, 0, h), (d, w, 0.06))]
    if rng.random() < 0.75:
        parts += _legs(rng, w, d, h, 0.07)
    else:  # pedestal
        parts += [_cyl((0, 0, h / 2), 0.12, h), _cyl((0, 0, 0.03), d * 0.6, 0.06)]
    return parts


def watercraft(rng: np.random.Generator) -> list[Part]:
    L, w = rng.uniform(1.8, 2.6), rng.uniform(0.45, 0.7)
    hh = rng.uniform(0.25, 0.35)
    parts = [
        _box((-0.1, 0, hh / 2), (L * 0.8, w, hh)),
        _cyl((L * 0.4 - 0.1, 0, hh / 2), w, L * 0.25, "x", taper=0.15),  # bow
    ]
    if rng.random() < 0.6:  # cabin
        parts.append(_box((-L * 0.15, 0, hh + 0.12), (L * rng.uniform(0.25, 0.4), w * 0.7, 0.24)))
    if rng.random() < 0.6:  # mast and sail
        mh = rng.uniform(0.8, 1.3)
        parts.append(_cyl((0.1, 0, hh + mh / 2), 0.04, mh))
        parts.append(_box((-0.15, 0, hh + mh * 0.55), (0.45, 0.02, mh * 0.75)))
    return parts


def motorcycle(rng: np.random.Generator) -> list[Part]:
    wb = rng.uniform(0.9, 1.2)
    wd = rng.uniform(0.45, 0.6)
    z0 = wd / 2
    parts = [_cyl((sx * wb / 2, 0, z0), wd, 0.1, "y") for sx in (-1, 1)]
    parts.append(_box((0, 0, z0 + 0.15), (wb * 0.6, 0.18, 0.25)))  # engine / tank
    parts.append(_box((-wb * 0.15, 0, z0 + 0.32), (wb * 0.4, 0.16, 0.06)))  # seat
    parts.append(_box((wb * 0.42, 0, z0 + 0.3), (0.05, 0.05, 0.5)))  # fork
    parts.append(_box((wb * 0.42, 0, z0 + 0.55), (0.05, rng.uniform(0.45, 0.65), 0.04)))  # handlebar
    return parts


GENERATORS: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "airplane": airplane,
    "bench": bench,
    "cabinet": cabinet,
    "car": car,
    "chair": chair,
    "lamp": lamp,
    "sofa": sofa,
    "table": table,
    "watercraft": watercraft,
    "motorcycle": motorcycle,
}


def model_parts(class_id: int, model_id: int, stretch=(1.0, 1.0, 1.0), max_extent: float = 0.56) -> list[Part]:
    """The parts of model ``model_id`` of class ``class_id``, stretched per axis, centred at the
    origin and scaled so its largest extent is ``max_extent``."""
    rng = np.random.default_rng([class_id, model_id, 20200613])
    parts = GENERATORS[CLASSES[class_id]](rng)
    st = np.asarray(stretch, dtype=float)
    lo, hi = _bounds(parts, st)
    centre, scale = (lo + hi) / 2, max_extent / float(np.max(hi - lo))
    return [
        Part(
            p.kind,
            tuple(((np.asarray(p.center) * st - centre) * scale).tolist()),
            tuple((np.asarray(p.size) * st * scale).tolist()),
            p.axis,
            p.taper,
        )
        for p in parts
    ]


def _bounds(parts: list[Part], stretch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = np.array([p.center for p in parts]) * stretch
    h = np.array([p.size for p in parts]) * stretch / 2
    return (c - h).min(0), (c + h).max(0)
