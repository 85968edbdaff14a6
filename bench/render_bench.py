"""Render throughput: the persistent-scene renderer vs a naive baseline that rebuilds the scene per image.

    python bench/render_bench.py [--images 24] [--out bench/render_bench.json]

Both modes render the same scene specs at the default quality (single 64², multi 128², 16 spp,
no denoising) in this process with every core as Cycles threads; prints images/s (and per core)
and writes JSON. Run it on a quiet machine: it measures wall time.

It also times Cycles' render call plus the EXR read-back inside the persistent renderer:
``speedup_bound`` = naive seconds per image / those seconds is the most that any reuse of the scene
can gain over the naive baseline at this quality (path tracing itself is shared by both).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from selfsup.data.dataset import DEFAULT_RESOLUTION
from selfsup.data.scene import Variant, sample_scenes


def _renderer_class(set_name: str):
    from selfsup.data.render import blender as render  # imports bpy

    return render.RENDERERS[set_name]


def measure(set_name: str, variant: str, n: int, samples: int, threads: int, naive: bool) -> tuple[float, float]:
    """Images per second over ``n`` images after two warm-up images, and the seconds per image spent
    inside Cycles' render call and the EXR read-back (the part no scene reuse can remove)."""
    cls = _renderer_class(set_name)
    scenes = sample_scenes(set_name, n + 2, Variant.parse(variant), seed=123)
    res = DEFAULT_RESOLUTION[set_name]
    renderer = None if naive else cls(res, samples, threads)
    t0, in_render = 0.0, [0.0]
    if renderer is not None:
        passes = renderer._render_passes

        def timed():
            t = time.perf_counter()
            out = passes()
            if t0:
                in_render[0] += time.perf_counter() - t
            return out

        renderer._render_passes = timed
    for i, s in enumerate(scenes):
        if i == 2:
            t0 = time.perf_counter()
        if naive:  # the whole scene from factory settings, for every image
            r = cls(res, samples, threads)
            r.render(s)
            r.close()
        else:
            renderer.render(s)
    return n / (time.perf_counter() - t0), in_render[0] / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--variant", default="TCVL")
    ap.add_argument("--out", type=Path, default=Path("bench/render_bench.json"))
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    rows = []
    for set_name in ("single", "multi"):
        n = args.images if set_name == "single" else max(4, args.images // 2)
        fast, render_s = measure(set_name, args.variant, n, args.samples, cores, naive=False)
        naive, _ = measure(set_name, args.variant, n, args.samples, cores, naive=True)
        # No renderer that keeps Cycles' path tracing can beat naive by more than this bound.
        bound = 1.0 / (naive * render_s)
        rows.append(
            {
                "set": set_name,
                "resolution": DEFAULT_RESOLUTION[set_name],
                "images": n,
                "persistent_img_s": round(fast, 2),
                "naive_img_s": round(naive, 2),
                "persistent_img_s_per_core": round(fast / cores, 2),
                "speedup": round(fast / naive, 2),
                "cycles_render_ms": round(1000 * render_s, 1),
                "scene_update_ms": round(1000 * (1 / fast - render_s), 1),
                "speedup_bound": round(bound, 2),
            }
        )
        print(
            f"{set_name:6s} {DEFAULT_RESOLUTION[set_name]}²: persistent {fast:6.2f} img/s "
            f"({fast / cores:.2f}/core), naive rebuild {naive:6.2f} img/s, speed-up ×{fast / naive:.2f}; "
            f"Cycles render + read-back {1000 * render_s:.1f} ms/img, scene update "
            f"{1000 * (1 / fast - render_s):.1f} ms/img, bound ×{bound:.2f}"
        )
    doc = {
        "variant": args.variant,
        "samples": args.samples,
        "cores": cores,
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
