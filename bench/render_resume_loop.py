"""Is a killed-and-resumed render byte-identical to an uninterrupted one? The resume test, in a loop.

    python bench/render_resume_loop.py [--runs 30] [--hog 0] [--out bench/render_resume_loop.json]

Renders the tests' tiny dataset (single, -C--, 32², 4 spp) once without interruption (64 images),
then ``--runs`` times starts a 96-image render of the same seed, SIGKILLs its process group as soon
as the first shard file exists, resumes it with the same command and compares the first 64 images
with the uninterrupted ones byte for byte. ``--hog N`` keeps N busy-looping processes running
throughout (the CPU contention under which CI once saw a resumed shard with another noise pattern).
Prints one line per run and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BASE = ["render", "--set", "single", "--variant=-C--", "--seed", "0", "--resolution", "32", "--samples", "4"]


def selfsup(*args: str) -> list[str]:
    return [sys.executable, "-m", "selfsup", *args]


def busy() -> None:
    while True:
        pass


def one_run(out: Path, reference: np.ndarray) -> dict:
    args = selfsup(*BASE, "--count", "96", "--out", str(out))
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (out / ".shards" / "shard_00000.npz").exists() and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = len(list((out / ".shards").glob("shard_*.npz")))
    subprocess.run(args, check=True, capture_output=True)
    images = np.load(out / "images.npy")[: len(reference)]
    per_image = np.abs(images.astype(int) - reference.astype(int)).reshape(len(reference), -1).mean(1)
    return {
        "shards_kept": kept,
        "identical": bool((per_image == 0).all()),
        "images_differing": int((per_image > 0).sum()),
        "max_mean_abs_diff": float(per_image.max()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--hog", type=int, default=0, help="busy-looping processes running alongside")
    ap.add_argument("--out", default="bench/render_resume_loop.json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="resume_loop_"))
    hogs = [mp.get_context("spawn").Process(target=busy, daemon=True) for _ in range(args.hog)]
    try:
        subprocess.run(selfsup(*BASE, "--count", "64", "--out", str(work / "ref")), check=True, capture_output=True)
        reference = np.load(work / "ref" / "images.npy")
        for h in hogs:
            h.start()
        rows = []
        for i in range(args.runs):
            rows.append({"run": i, **one_run(work / f"run{i}", reference)})
            shutil.rmtree(work / f"run{i}")
            print(rows[-1], flush=True)
    finally:
        for h in hogs:
            h.terminate()
        shutil.rmtree(work, ignore_errors=True)
    identical = sum(r["identical"] for r in rows)
    print(f"{identical}/{args.runs} resumed renders byte-identical ({args.hog} busy processes alongside)")
    Path(args.out).write_text(json.dumps({"runs": args.runs, "hog": args.hog, "identical": identical, "rows": rows}))


if __name__ == "__main__":
    main()
