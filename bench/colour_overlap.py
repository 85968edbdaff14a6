"""How much the object's colour alone tells its class (SPEC §2's C factor), from the scene labels.

Two colour-only classifiers on the object's RGB (the flat colour before lighting and texture), fit on
the first half of N scenes and scored on the second: the nearest class-mean colour, and the nearest
colours (k-NN, k = 10).
Chance is 0.10 (ten balanced classes).

    .venv/bin/python bench/colour_overlap.py [--count 4000] [--json bench/colour_overlap.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from selfsup.data.scene import Variant, sample_single_scenes
from selfsup.data.shapes import CLASSES


def colour_accuracies(variant: str, count: int, seed: int = 0) -> dict[str, float]:
    scenes = sample_single_scenes(count, Variant.parse(variant), seed)
    x = np.array([s.object_rgb for s in scenes])
    y = np.array([s.class_id for s in scenes])
    h = len(x) // 2
    cents = np.stack([x[:h][y[:h] == c].mean(0) for c in range(len(CLASSES))])
    centroid = np.argmin(((x[h:, None] - cents[None]) ** 2).sum(-1), 1)
    d = ((x[h:, None] - x[None, :h]) ** 2).sum(-1)
    near = np.argsort(d, 1)[:, :10]
    knn = np.array([np.bincount(y[:h][row], minlength=len(CLASSES)).argmax() for row in near])
    return {"nearest_mean": float((centroid == y[h:]).mean()), "knn10": float((knn == y[h:]).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=4000)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    out = {v: colour_accuracies(v, args.count) for v in ("----", "-C--")}
    for v, r in out.items():
        print(
            f"{v}: nearest class-mean colour {r['nearest_mean']:.3f}, 10 nearest colours {r['knn10']:.3f} (chance 0.10)"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"count": args.count, "accuracy": out}, f, indent=2)


if __name__ == "__main__":
    main()
