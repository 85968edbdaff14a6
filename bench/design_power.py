"""Choose a study's seeds and budgets by measured power: from a scratch sweep's results.csv, per
budget the mean and seed s.d., whether each step rises by more than twice its standard error, and
for several seed counts the power to detect U = 1 (pretraining halves the labels) and the minimum
detectable U at 80 % power, simulated from the measured curve and s.d. (selfsup.analyse.power).

    .venv/bin/python bench/design_power.py RESULTS.csv [--seeds 3,5,8] [--metric accuracy] [--json OUT]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

from selfsup.analyse.power import U_GRID, detection_power, minimum_detectable


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--seeds", default="3,5,8")
    ap.add_argument("--metric", default="accuracy")
    ap.add_argument("--studies", type=int, default=200)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    df = pd.read_csv(args.results)
    df = df[(df.metric == args.metric) & (df.method == "scratch")]
    st = df.groupby("label_budget")["value"].agg(mean="mean", sd="std", k="count").sort_index()
    n, m, sd = st.index.to_numpy(), st["mean"].to_numpy(), st.sd.to_numpy()
    se = sd / np.sqrt(st.k.to_numpy())
    rise = np.diff(m)
    two_se = 2 * np.sqrt(se[1:] ** 2 + se[:-1] ** 2)
    print(f"scratch curve ({int(st.k.min())} seeds): budget mean sd")
    for b, a, s in zip(n, m, sd):
        print(f"  {b:>6} {a:.3f} {s:.3f}")
    print("steps rising by more than twice their standard error:", [bool(r > t) for r, t in zip(rise, two_se)])
    out = {"budgets": n.tolist(), "mean": m.tolist(), "sd": sd.tolist(), "rise_over_2se": (rise > two_se).tolist()}
    u1 = list(U_GRID).index(1.0)
    for k in (int(s) for s in args.seeds.split(",")):
        p = detection_power(n, m, sd, k, studies=args.studies)
        mdu = minimum_detectable(p)
        print(f"{k} seeds: power at U = 1 {np.round(p[u1], 2).tolist()}; minimum detectable U {mdu.tolist()}")
        out[f"seeds_{k}"] = {"power_u1": p[u1].tolist(), "min_detectable_u": mdu.tolist()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
