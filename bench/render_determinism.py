"""Which render settings change the pixels? The same scenes under the settings a machine decides.

    python bench/render_determinism.py [--count 16] [--out bench/render_determinism.json]

Renders the same single-set scenes (``-CV-``, 64², 16 spp, seed 0) in fresh processes under:

- ``default``: this machine's choices (Cycles' AVX2 kernel where the CPU has AVX2, 2 threads);
- ``default-again``: the same, a second time (run-to-run determinism);
- ``one-thread``: ``workers`` 2, so one Cycles thread each (thread-count independence);
- ``sse42-kernel``: ``CYCLES_CPU_NO_AVX2=1``, Cycles' SSE4.2 kernel, as on a CPU without AVX2.

For each it prints the images' sha256 and, against ``default``, the fraction of pixel values that
differ, the largest difference (of 255) and the PSNR. Also records the CPU's SIMD flags and which
instruction sets the bundled Embree (the ray-intersection library) was built for. Writes JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CONFIGS = {
    "default": ({}, 1),
    "default-again": ({}, 1),
    "one-thread": ({}, 2),
    "sse42-kernel": ({"CYCLES_CPU_NO_AVX2": "1"}, 1),
}
RENDER = (
    "import sys\n"
    "from selfsup.data.render import render_dataset\n"
    "if __name__ == '__main__':\n"
    "    render_dataset(sys.argv[1], 'single', '-CV-', int(sys.argv[2]), seed=0, workers=int(sys.argv[3]),\n"
    "                   resolution=64, samples=16, progress=False)\n"
)


def cpu_model() -> str:
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()
    return line.split(":", 1)[1].strip()


def cpu_flags() -> list[str]:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    wanted = {"sse4_2", "avx", "avx2", "fma", "avx512f"}
    return sorted(wanted & set(flags.split(":")[1].split()))


def embree_isas() -> list[str]:
    """The instruction sets the bundled Embree has kernels for (from its symbol names)."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    lib = next(Path(spec.origin).parent.glob("lib/libembree*.so*"), None) if spec and spec.origin else None
    if lib is None:
        return []
    data = lib.read_bytes()
    return [isa for isa in ("sse2", "sse42", "avx", "avx2", "avx512") if f"{isa}::".encode() in data]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=16)
    ap.add_argument("--out", default="bench/render_determinism.json")
    a = ap.parse_args()
    images, result = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "render.py"
        script.write_text(RENDER)
        for name, (env, workers) in CONFIGS.items():
            out = Path(tmp) / name
            subprocess.run(
                [sys.executable, str(script), str(out), str(a.count), str(workers)],
                env={**os.environ, **env},
                check=True,
            )
            images[name] = np.load(out / "images.npy")
    ref = images["default"].astype(np.int64)
    for name, img in images.items():
        d = img.astype(np.int64) - ref
        mse = float((d**2).mean())
        result[name] = {
            "sha256": hashlib.sha256(img.tobytes()).hexdigest()[:16],
            "values_differing": float((d != 0).mean()),
            "max_abs_difference": int(np.abs(d).max()),
            "psnr_db": None if mse == 0 else 10 * np.log10(255**2 / mse),
        }
        r = result[name]
        print(
            f"{name:14s} {r['sha256']}  differing {r['values_differing']:.5%}  max {r['max_abs_difference']}"
            + (f"  PSNR {r['psnr_db']:.1f} dB" if r["psnr_db"] else "  identical")
        )
    out = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "embree_kernels": embree_isas(),
        "count": a.count,
        "configs": result,
        "command": f"python bench/render_determinism.py --count {a.count} --out {a.out}",
    }
    print(f"CPU flags {out['cpu_flags']}; bundled Embree kernels {out['embree_kernels']}")
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
