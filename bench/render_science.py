"""Does a cheaper render setting change the science? Scratch classification on both renders.

    python bench/render_science.py --new 4,fast [--old 16,none] [--count 2000] [--out bench/render_science.json]

Renders the default study's single-object dataset (``-CV-``, 64², seed 0) twice, at the old and the
new quality (``SAMPLES,DENOISE``), then finetunes scratch classification on each at the default
study's budgets, steps and batch size with 3 seeds (the same seeds: the same labelled subsets and
initialisations), and compares the two mean test accuracies per budget with their 95 % t intervals.
The datasets and results go to ``--work`` (kept: a rerun reuses them). Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from selfsup.analyse.utility import mean_interval
from selfsup.data.render import render_dataset
from selfsup.evaluate.finetune import FinetuneConfig, finetune

ROOT = Path(__file__).resolve().parents[1]


def quality(text: str) -> tuple[int, str]:
    samples, _, denoise = text.partition(",")
    return int(samples), denoise or "none"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", default="16,none")
    ap.add_argument("--new", required=True)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--work", default="/tmp/selfsup-render-science")
    ap.add_argument("--out", default="bench/render_science.json")
    args = ap.parse_args()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    ft = params["finetune_single"]
    budgets = [int(b) for b in str(ft["budgets"]).split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    config = FinetuneConfig(steps=ft["steps"], epochs=ft["epochs"], batch_size=ft["batch_size"], lr=ft["lr"])
    work = Path(args.work)
    result = {"count": args.count, "budgets": budgets, "seeds": seeds, "steps": ft["steps"], "renders": {}}
    for name, text in (("old", args.old), ("new", args.new)):
        samples, denoise = quality(text)
        t0 = time.perf_counter()
        m = render_dataset(
            work / f"data-{name}", "single", "-CV-", args.count, seed=0, samples=samples, denoise=denoise,
            progress=True, replace=True,
        )  # fmt: skip
        render_s = time.perf_counter() - t0
        res = finetune(
            "classification", work / f"data-{name}", work / f"ft-{name}", None, budgets, seeds, config=config
        )
        acc = res[res.metric == "accuracy"]
        per_budget = {}
        for b, g in acc.groupby("label_budget"):
            lo, hi = mean_interval(g["value"].to_numpy())
            per_budget[int(b)] = {"mean": float(g["value"].mean()), "ci_low": float(lo), "ci_high": float(hi)}
        result["renders"][name] = {
            "samples": samples,
            "denoise": denoise,
            "dataset_hash": m["dataset_hash"],
            "render_s_incl_resume": round(render_s, 1),
            "accuracy": per_budget,
        }
    agree = {}
    for b in budgets:
        o, n = result["renders"]["old"]["accuracy"][b], result["renders"]["new"]["accuracy"][b]
        agree[b] = o["ci_low"] <= n["ci_high"] and n["ci_low"] <= o["ci_high"]
        print(
            f"budget {b}: old {o['mean']:.3f} [{o['ci_low']:.3f}, {o['ci_high']:.3f}]  "
            f"new {n['mean']:.3f} [{n['ci_low']:.3f}, {n['ci_high']:.3f}]  intervals overlap: {agree[b]}"
        )
    result["intervals_overlap"] = agree
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
