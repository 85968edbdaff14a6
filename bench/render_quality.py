"""Render quality against cost: which Cycles setting gives today's image quality for the least CPU.

    python bench/render_quality.py [--images 8] [--repeats 3] [--throughput-images 256] [--out FILE.json]

The same scene specs (single 64² and multi 128², variants TCVL and -CV-) are rendered at a 256-spp
reference and at every candidate setting (:class:`selfsup.data.render.quality.Quality`: samples,
OpenImageDenoise with its fast / accurate prefilter, adaptive sampling, the light tree, bounces),
and at 8 spp with Cycles settings outside it (``TWEAKS``: indirect clamping, no world light sampling,
the blue-noise pattern).
For each candidate it reports the PSNR of the uint8 images against the reference (pooled over the
images of a set) and images/s per core (one Cycles thread, median of ``--repeats`` timings), and
picks the cheapest candidate whose PSNR is at least the old default's (16 spp, no denoising) on
every set. Then it measures throughput on the whole machine for the old default and the pick, as
1 process × all cores against one process per core (``render_dataset``, the pipeline's path).

Run it alone on a quiet machine: it measures wall time. Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from selfsup.data.dataset import DEFAULT_RESOLUTION
from selfsup.data.render.quality import Quality
from selfsup.data.scene import Variant, sample_scenes

SETS = (("single", "TCVL"), ("single", "-CV-"), ("multi", "TCVL"), ("multi", "-CV-"))
REFERENCE = Quality(256)
OLD_DEFAULT = Quality()


def candidates() -> list[Quality]:
    q = [Quality(s) for s in (32, 16, 12, 8, 4, 2)]
    q += [Quality(s, "fast") for s in (16, 8, 4, 2, 1)]
    q += [Quality(s, "accurate") for s in (16, 12, 8, 4, 2, 1)]
    q += [Quality(16, adaptive_threshold=t) for t in (0.05, 0.1)]
    q += [Quality(16, light_tree=False), Quality(16, max_bounces=2), Quality(16, max_bounces=1)]
    q += [Quality(4, "fast", max_bounces=2), Quality(2, "fast", max_bounces=2), Quality(4, "accurate", max_bounces=2)]
    return q


# Cycles settings outside Quality, tried at 8 spp (half the old default's cost) to see whether any
# removes the noise that halving the samples adds: reported beside the candidates, never picked
TWEAKS = {
    "clamp-indirect1": lambda sc: setattr(sc.cycles, "sample_clamp_indirect", 1.0),
    "clamp-indirect0.3": lambda sc: setattr(sc.cycles, "sample_clamp_indirect", 0.3),
    "no-world-mis": lambda sc: setattr(sc.world.cycles, "sampling_method", "NONE"),
    "blue-noise": lambda sc: setattr(sc.cycles, "sampling_pattern", "BLUE_NOISE"),
}


def psnr(images: np.ndarray, reference: np.ndarray) -> float:
    mse = float(np.mean((images.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def render_all(set_name: str, scenes, quality: Quality, threads: int, tweak: str = "") -> tuple[np.ndarray, float]:
    """The scenes' images, and seconds per image after one warm-up render, in one renderer."""
    from selfsup.data.render import blender  # imports bpy

    renderer = blender.RENDERERS[set_name](DEFAULT_RESOLUTION[set_name], quality, threads)
    if tweak:
        TWEAKS[tweak](renderer.sc)
    renderer.render(scenes[0])
    t0 = time.perf_counter()
    images = np.stack([renderer.render(s)["image"] for s in scenes])
    seconds = (time.perf_counter() - t0) / len(scenes)
    renderer.close()
    return images, seconds


def machine_throughput(quality: Quality, count: int) -> dict:
    """images/s of ``selfsup render`` on the single set (TCVL), 1 process × all cores and 1 process
    per core (each with one Cycles thread). Run as the CLI in a fresh process: this one has imported
    ``bpy``, whose path changes would leak into render workers spawned from here."""
    cores = os.cpu_count() or 1
    out = {}
    for workers in sorted({1, cores}):
        folder = Path(tempfile.mkdtemp(prefix="render_quality_"))
        args = ["--set", "single", "--variant=TCVL", "--count", str(count), "--seed", "9", "--workers", str(workers)]
        args += ["--samples", str(quality.samples), "--denoise", quality.denoise, "--out", str(folder / "d")]
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "selfsup", "render", *args], check=True, capture_output=True)
        out[f"{workers}x{max(1, cores // workers)}"] = count / (time.perf_counter() - t0)
        shutil.rmtree(folder)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=8, help="scenes per set (multi: half as many)")
    ap.add_argument("--repeats", type=int, default=3, help="timings per candidate (the median is reported)")
    ap.add_argument("--throughput-images", type=int, default=256, help="images per render_dataset throughput run")
    ap.add_argument("--out", default="bench/render_quality.json")
    args = ap.parse_args()
    rows = []
    for set_name, variant in SETS:
        n = args.images if set_name == "single" else max(2, args.images // 2)
        scenes = sample_scenes(set_name, n, Variant.parse(variant), seed=321)
        ref, ref_s = render_all(set_name, scenes, REFERENCE, os.cpu_count() or 1)
        print(f"{set_name} {variant}: reference {REFERENCE.label()} {ref_s:.2f} s/image", flush=True)
        runs = [(q, "") for q in candidates()] + [(Quality(8), t) for t in TWEAKS]
        for q, tweak in runs:
            timings, images = [], None
            for _ in range(args.repeats):
                images, s = render_all(set_name, scenes, q, threads=1, tweak=tweak)
                timings.append(1.0 / s)
            row = {
                "set": set_name,
                "variant": variant,
                "setting": q.label() + (f"+{tweak}" if tweak else ""),
                **q.as_dict(),
                "tweak": tweak,
                "psnr_db": round(psnr(images, ref), 3),
                "images_per_s_per_core": round(statistics.median(timings), 3),
                "images_per_s_per_core_runs": [round(t, 3) for t in timings],
            }
            rows.append(row)
            print(
                f"  {row['setting']:<32} PSNR {row['psnr_db']:6.2f} dB  {row['images_per_s_per_core']:6.2f} img/s/core",
                flush=True,
            )

    by = {}
    for r in rows:
        if not r["tweak"]:  # a tweak is not a Quality setting: reported, never picked
            by.setdefault(r["setting"], {})[(r["set"], r["variant"])] = r
    old = by[OLD_DEFAULT.label()]

    def cost(setting: str) -> float:  # CPU-seconds per image, summed over the sets
        return sum(1.0 / r["images_per_s_per_core"] for r in by[setting].values())

    good = [s for s, per in by.items() if all(per[k]["psnr_db"] >= old[k]["psnr_db"] for k in old)]
    pick = min(good, key=cost)
    pick_q = next(q for q in candidates() if q.label() == pick)
    ratio = cost(OLD_DEFAULT.label()) / cost(pick)
    print(
        f"\ncheapest setting at or above {OLD_DEFAULT.label()}'s PSNR on every set: {pick} "
        f"(×{ratio:.2f} images per CPU-second)"
    )
    for k in old:
        a, b = old[k], by[pick][k]
        print(f"  {k[0]} {k[1]}: PSNR {a['psnr_db']:.2f} → {b['psnr_db']:.2f} dB, "
              f"{a['images_per_s_per_core']:.2f} → {b['images_per_s_per_core']:.2f} img/s/core")  # fmt: skip
    machine = {q.label(): machine_throughput(q, args.throughput_images) for q in (OLD_DEFAULT, pick_q)}
    for label, t in machine.items():
        print(f"  render_dataset {label}: " + ", ".join(f"{k} {v:.1f} img/s" for k, v in t.items()))
    result = {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "images": args.images,
        "repeats": args.repeats,
        "reference": REFERENCE.label(),
        "old_default": OLD_DEFAULT.label(),
        "pick": pick,
        "speedup_per_core": round(ratio, 3),
        "rows": rows,
        "machine_throughput": machine,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
