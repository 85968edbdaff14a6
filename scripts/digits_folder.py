"""Write scikit-learn's 1,797 real handwritten digits (8×8, 17 grey levels) as an ImageFolder tree.

    python scripts/digits_folder.py examples/digits

One sub-folder per digit (0 … 9), one greyscale PNG per image (values × 255/16): the layout
`selfsup import --from imagefolder` reads. The committed examples/digits was written by this script.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def write(out: Path) -> int:
    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images, digits.target)):
        folder = out / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.round(image * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels, "L").save(folder / f"{i:04d}.png", optimize=True)
    return len(digits.target)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/digits_folder.py OUT")
    print(f"wrote {write(Path(sys.argv[1]))} digits under {sys.argv[1]}")
