"""Does the default study's headline replicate? Two disjoint seed sets of the same finetuning sweeps.

    python bench/replicate.py [--seeds 5,6,7,8,9] [--out bench/replicate.json]

Replicate A is what ``dvc repro`` wrote (results/finetune/DATA/BACKBONE/INIT-TASK, the seeds of
``finetune_single.seeds`` in params.yaml). Replicate B runs the very same stage command
(``selfsup finetune`` with the same data, pretrained backbone, tuned parameters, budgets and steps)
with the disjoint ``--seeds`` into results/replicate/... (finished cells are kept: a killed run
resumes). Every seed picks its own labelled subset, initial head and batch order, so B is a second
draw of everything the seeds control; the data and the pretrained backbones are shared.

For each single-object task, init and budget it compares the two replicates' 95 % t intervals of
the mean metric, and for each pretrained init their utility intervals (as the report's, censored
ends open), and reports how often they overlap and the largest difference between point estimates.
The probes of ``probe.methods`` (linear, kNN) on ``probe.task`` are replicated the same way.
Prints a table and writes JSON. Needs a finished ``dvc repro`` of the default study.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from selfsup.analyse.utility import mean_interval, utility_curve, utility_interval
from selfsup.core.defaults import SCRATCH
from selfsup.evaluate.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str]) -> None:
    subprocess.run([str(Path(sys.executable).parent / "selfsup"), *cmd], cwd=ROOT, check=True)


def run_replicate(params: dict, seeds: str, data: str, backbone: str, init: str, task: str) -> Path:
    """The finetune_single stage's command with other seeds; returns its results.csv."""
    ft = params["finetune_single"]
    out = ROOT / "results" / "replicate" / data / backbone / f"{init}-{task}"
    _run([
        "finetune",
        "--task", task,
        "--init", f"models/{data}/{backbone}/{init}",
        "--data", f"data/{data}",
        "--budgets", str(ft["budgets"]),
        "--seeds", seeds,
        "--steps", str(ft["steps"]),
        "--epochs", str(ft["epochs"]),
        "--batch-size", str(ft["batch_size"]),
        "--params-file", f"tuned/{data}/{backbone}/{init}-{task}/best_params.json",
        "--out", str(out),
    ])  # fmt: skip
    return out / "results.csv"


def run_probe_replicate(params: dict, seeds: str, data: str, backbone: str, method: str, protocol: str) -> Path:
    """The probe stage's command with other seeds (without the seedless all-labels point); its results.csv."""
    pr, ft = params["probe"], params["finetune_single"]
    out = ROOT / "results" / "replicate" / data / backbone / f"{method}-{protocol}"
    _run([
        "probe",
        "--protocol", protocol,
        "--task", pr["task"],
        "--init", f"models/{data}/{backbone}/{method}",
        "--data", f"data/{data}",
        "--budgets", str(ft["budgets"]),
        "--seeds", seeds,
        "--knn-metric", pr["knn_metric"],
        "--k", str(pr["k"]),
        "--out", str(out),
    ])  # fmt: skip
    return out / "results.csv"


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool | None:
    """Whether two intervals share a point; an open (infinite) end is a real end. None where either is
    missing (NaN: too few seeds)."""
    if any(np.isnan([*a, *b])):
        return None
    return bool(a[0] <= b[1] and b[0] <= a[1])


def compare(a: pd.DataFrame, b: pd.DataFrame, metric: str, interpolation: str) -> list[dict]:
    """Per init, protocol and budget: both replicates' mean and t interval, and for pretrained inits U
    and its interval against that replicate's scratch curve (finetuned)."""
    rows = []
    a, b = a[a.metric == metric], b[b.metric == metric]
    for (method, protocol, budget), ga in a.groupby(["method", "protocol", "label_budget"]):
        gb = b[(b.method == method) & (b.protocol == protocol) & (b.label_budget == budget)]
        if gb.empty:  # the all-labels probe point has one seed and no replicate
            continue
        ia, ib = mean_interval(ga.value), mean_interval(gb.value)
        rows.append(
            {
                "quantity": metric,
                "method": method,
                "protocol": protocol,
                "label_budget": int(budget),
                "a": float(ga.value.mean()),
                "a_ci": ia,
                "b": float(gb.value.mean()),
                "b_ci": ib,
                "overlap": overlap(ia, ib),
            }
        )
    pairs = sorted({(m, p) for m, p in zip(a.method, a.protocol) if m != SCRATCH})
    for method, protocol in pairs:
        per = {}
        for name, df in (("a", a), ("b", b)):
            s = df[(df.method == SCRATCH) & (df.protocol == "finetune")]
            p = df[(df.method == method) & (df.protocol == protocol) & df.label_budget.isin(b.label_budget)]
            sm, pm = s.groupby("label_budget").value.mean(), p.groupby("label_budget").value.mean()
            point = utility_curve(sm.index, sm.values, pm.index, pm.values, interpolation)
            lo, hi, _ = utility_interval(s, p, interpolation)
            per[name] = (pm.index, point, lo, hi)
        for j, n in enumerate(per["a"][0]):
            (ua, sa), (ub, sb) = per["a"][1][j], per["b"][1][j]
            ia, ib = (per["a"][2][j], per["a"][3][j]), (per["b"][2][j], per["b"][3][j])
            rows.append(
                {
                    "quantity": "utility",
                    "method": method,
                    "protocol": protocol,
                    "label_budget": int(n),
                    "a": ua,
                    "a_ci": tuple(map(float, ia)),
                    "a_status": sa,
                    "b": ub,
                    "b_ci": tuple(map(float, ib)),
                    "b_status": sb,
                    "overlap": overlap(ia, ib),
                }
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="5,6,7,8,9", help="replicate B's seeds (disjoint from params.yaml's)")
    ap.add_argument("--out", default="bench/replicate.json")
    a = ap.parse_args()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    seeds_a = {int(s) for s in str(params["finetune_single"]["seeds"]).split(",")}
    seeds_b = {int(s) for s in a.seeds.split(",")}
    if seeds_a & seeds_b:
        sys.exit(f"replicate.py: seeds {sorted(seeds_a & seeds_b)} are in both replicates: give disjoint --seeds")
    interpolation = params["report"]["interpolation"]
    rows, t0 = [], time.perf_counter()
    for data in params["study"]["single"]:
        for backbone in params["study"]["backbones"]:
            for task in params["finetune_single"]["tasks"]:
                frames = {"a": [], "b": []}
                for init in params["study"]["inits"]:
                    stage = ROOT / "results" / "finetune" / data / backbone / f"{init}-{task}" / "results.csv"
                    if not stage.exists():
                        sys.exit(f"replicate.py: {stage.relative_to(ROOT)} is missing: run `dvc repro` first")
                    frames["a"].append(pd.read_csv(stage))
                    frames["b"].append(pd.read_csv(run_replicate(params, a.seeds, data, backbone, init, task)))
                if task == params["probe"]["task"]:  # the probes of the same backbones, on the same task
                    for method in params["probe"]["methods"]:
                        for protocol in params["probe"]["protocols"]:
                            stage = ROOT / "results" / "probe" / data / backbone / f"{method}-{protocol}"
                            frames["a"].append(pd.read_csv(stage / "results.csv"))
                            got = run_probe_replicate(params, a.seeds, data, backbone, method, protocol)
                            frames["b"].append(pd.read_csv(got))
                metric = get_task(task).metric
                for r in compare(pd.concat(frames["a"]), pd.concat(frames["b"]), metric, interpolation):
                    rows.append({"data": data, "backbone": backbone, "task": task, **r})
    table = pd.DataFrame(rows)
    summary = {}
    for quantity, part in (
        ("metric", table[table.quantity != "utility"]),
        ("utility", table[table.quantity == "utility"]),
    ):
        known = part[part.overlap.notna()]
        diff = (part.a - part.b).abs().replace([np.inf, -np.inf], np.nan)
        summary[quantity] = {
            "intervals_compared": int(len(known)),
            "overlap_rate": float(known.overlap.astype(bool).mean()) if len(known) else None,
            "largest_point_difference": float(diff.max()) if diff.notna().any() else None,
            "not_overlapping": known[~known.overlap.astype(bool)][["task", "method", "label_budget"]].to_dict(
                "records"
            ),
        }
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(table.drop(columns=["data", "backbone"]).to_string(index=False))
    for q, s in summary.items():
        print(
            f"{q}: intervals overlap in {s['intervals_compared']} comparisons at rate {s['overlap_rate']}; "
            f"largest point difference {s['largest_point_difference']}"
        )
    out = {
        "seeds_a": sorted(seeds_a),
        "seeds_b": sorted(seeds_b),
        "finetune_single": params["finetune_single"],
        "wall_s": time.perf_counter() - t0,
        "summary": summary,
        "rows": table.to_dict("records"),
        "command": f"python bench/replicate.py --seeds {a.seeds} --out {a.out}",
    }
    Path(a.out).write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
