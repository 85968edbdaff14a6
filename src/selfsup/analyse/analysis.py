"""The report's tables beyond the utility curves, as pure functions of long results tables.

Each takes the long results (``method, task, protocol, label_budget, seed, metric, value`` plus the
extra columns finetune and probe write) or the utility table, and returns a DataFrame that the
report writes as CSV and draws. A table whose inputs are missing (one variant only, one backbone
only) comes back empty, with its columns.
"""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats

from selfsup.analyse.utility import OK, format_interval, mean_interval
from selfsup.core.defaults import SCRATCH
from selfsup.data.scene import Variant


def headline_rows(results: pd.DataFrame, metric_of_task: dict[str, str]) -> pd.DataFrame:
    """Only each task's headline metric."""
    keep = [metric_of_task.get(t) == m for t, m in zip(results.task, results.metric)]
    return results[keep]


def _mean_over_seeds(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    keys = [k for k in keys if k in df.columns]
    return df.groupby(keys, dropna=False)["value"].mean().reset_index()


def protocol_agreement(results: pd.DataFrame, metric_of_task: dict[str, str]) -> pd.DataFrame:
    """The protocol study: at each task and budget, do two protocols rank the pretrained methods
    alike? Kendall τ and Spearman ρ (with two-sided p-values) between the methods' mean metrics
    under each pair of protocols (finetune, frozen-k, linear, knn-*)."""
    cols = [
        "task",
        "label_budget",
        "protocol_a",
        "protocol_b",
        "methods",
        "kendall_tau",
        "kendall_p",
        "spearman_rho",
        "spearman_p",
    ]
    df = headline_rows(results, metric_of_task)
    df = _mean_over_seeds(df[df.method != SCRATCH], ["task", "label_budget", "protocol", "method"])
    rows = []
    for (task, budget), g in df.groupby(["task", "label_budget"]):
        table = g.pivot_table(index="method", columns="protocol", values="value")
        protos = sorted(table.columns)
        for i, a in enumerate(protos):
            for b in protos[i + 1 :]:
                pair = table[[a, b]].dropna()
                if len(pair) < 2:
                    continue
                tau, tp = stats.kendalltau(pair[a], pair[b])
                rho, rp = stats.spearmanr(pair[a], pair[b])
                rows.append(
                    {
                        "task": task,
                        "label_budget": int(budget),
                        "protocol_a": a,
                        "protocol_b": b,
                        "methods": len(pair),
                        "kendall_tau": float(tau),
                        "kendall_p": float(tp),
                        "spearman_rho": float(rho),
                        "spearman_p": float(rp),
                    }
                )
    return pd.DataFrame(rows, columns=cols)


def probe_table(results: pd.DataFrame, metric_of_task: dict[str, str]) -> pd.DataFrame:
    """The paper's Table 1: the linear probe's headline metric at the largest budget probed, per
    task, dataset variant and method (mean over seeds)."""
    cols = ["task", "finetune_variant", "method", "label_budget", "value"]
    df = headline_rows(results, metric_of_task)
    df = df[df.protocol == "linear"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    if "finetune_variant" not in df.columns:
        df = df.assign(finetune_variant="")
    largest = df.groupby(["task", "finetune_variant"])["label_budget"].transform("max")
    df = df[df.label_budget == largest]
    return _mean_over_seeds(df, cols[:-1])[cols]


def factor_effects(util: pd.DataFrame) -> pd.DataFrame:
    """The paper's Fig. 6, per pair and budget: the change in utility when one factor is switched on,
    per method, task and protocol, for every pair of finetuning variants that differ in exactly that
    factor ('-' → the letter), at every budget where both utilities are defined."""
    cols = [
        "method",
        "task",
        "protocol",
        "factor",
        "variant_off",
        "variant_on",
        "label_budget",
        "utility_off",
        "utility_on",
        "delta_utility",
    ]
    if "finetune_variant" not in util.columns or util.empty:
        return pd.DataFrame(columns=cols)
    ok = util[util.status == OK]
    if "pretrain_variant" in ok.columns:  # a factor's effect is in-domain: pretrained on the data finetuned on
        ok = ok[(ok.pretrain_variant.fillna("") == "") | (ok.pretrain_variant == ok.finetune_variant)]
    mean = ok.groupby(["method", "task", "protocol", "finetune_variant", "label_budget"])["utility"].mean()
    rows = []
    for (method, task, protocol), g in mean.groupby(level=[0, 1, 2]):
        by_variant: dict[str, dict[int, float]] = {}
        for k, v in g.items():
            by_variant.setdefault(str(k[3]), {})[int(k[4])] = float(v)
        for off, u_off in by_variant.items():
            variant = Variant.try_parse(off)
            for letter, switched in variant.switched_on() if variant else []:
                u_on = by_variant.get(switched.name, {})
                for budget in sorted(set(u_off) & set(u_on)):
                    rows.append(
                        {
                            "method": method,
                            "task": task,
                            "protocol": protocol,
                            "factor": letter,
                            "variant_off": off,
                            "variant_on": switched.name,
                            "label_budget": budget,
                            "utility_off": u_off[budget],
                            "utility_on": u_on[budget],
                            "delta_utility": u_on[budget] - u_off[budget],
                        }
                    )
    return pd.DataFrame(rows, columns=cols)


def factor_summary(effects: pd.DataFrame) -> pd.DataFrame:
    """Fig. 6's bars: per method, task, protocol and factor, the mean change in utility over the
    variant pairs and budgets of :func:`factor_effects`, with a 95 % t interval over those changes
    (none below 3 of them): how consistently switching the factor on helps or hurts across scenes."""
    cols = ["method", "task", "protocol", "factor", "pairs", "n", "delta_utility", "ci_low", "ci_high"]
    rows = []
    for (method, task, protocol, factor), g in effects.groupby(["method", "task", "protocol", "factor"]):
        lo, hi = mean_interval(g.delta_utility)
        rows.append(
            {
                "method": method,
                "task": task,
                "protocol": protocol,
                "factor": factor,
                "pairs": len(g.groupby(["variant_off", "variant_on"])),
                "n": len(g),
                "delta_utility": float(g.delta_utility.mean()),
                "ci_low": lo,
                "ci_high": hi,
            }
        )
    return pd.DataFrame(rows, columns=cols)


def frozen_table(results: pd.DataFrame, metric_of_task: dict[str, str]) -> pd.DataFrame:
    """The paper's Fig. 8: the headline metric per number of frozen blocks k = 0..3 (finetune = 0),
    per method, task and budget (mean over seeds), and its change against finetuning every weight
    (``delta``: the same method, task and budget at k = 0)."""
    cols = ["method", "task", "label_budget", "frozen_blocks", "value", "delta"]
    df = headline_rows(results, metric_of_task)
    df = df[df.protocol.str.fullmatch(r"finetune|frozen-\d")]
    df = df[df.method != SCRATCH]
    if df.empty or df.protocol.nunique() < 2:
        return pd.DataFrame(columns=cols)
    df = df.assign(frozen_blocks=[0 if p == "finetune" else int(p.split("-")[1]) for p in df.protocol])
    table = _mean_over_seeds(df, cols[:4])
    base = table[table.frozen_blocks == 0].set_index(["method", "task", "label_budget"])["value"]
    keys = pd.MultiIndex.from_frame(table[["method", "task", "label_budget"]])
    return table.assign(delta=table.value.to_numpy() - base.reindex(keys).to_numpy())[cols]


def backbone_table(results: pd.DataFrame, metric_of_task: dict[str, str]) -> pd.DataFrame:
    """ResNet9 vs ResNet50 (any backbones present): the headline metric per backbone, method, task,
    protocol and budget; empty unless at least two backbones were run."""
    cols = ["method", "task", "protocol", "label_budget", "backbone", "value"]
    if "backbone" not in results.columns or results.backbone.nunique() < 2:
        return pd.DataFrame(columns=cols)
    return _mean_over_seeds(headline_rows(results, metric_of_task), cols[:-1])[cols]


def transfer_matrix(results: pd.DataFrame, metric_of_task: dict[str, str]) -> pd.DataFrame:
    """The paper's Fig. 9: per (pretraining variant, finetuning variant), method, task and protocol,
    the mean change of the headline metric against scratch on the finetuning variant, over every
    budget both were run at ("average change in accuracy when finetuning on 250–4000 samples");
    ``value`` is the mean metric itself. Empty unless some pretraining and finetuning variants differ."""
    cols = [
        "method",
        "task",
        "protocol",
        "pretrain_variant",
        "finetune_variant",
        "budgets",
        "value",
        "scratch",
        "delta",
    ]
    if not {"pretrain_variant", "finetune_variant"} <= set(results.columns):
        return pd.DataFrame(columns=cols)
    df = headline_rows(results, metric_of_task)
    ctx = ["backbone"] if "backbone" in df.columns else []
    scratch = _mean_over_seeds(df[df.method == SCRATCH], ["task", "finetune_variant", *ctx, "label_budget"])
    df = df[(df.method != SCRATCH) & df.pretrain_variant.notna() & (df.pretrain_variant.astype(str) != "")]
    if df.empty or (df.pretrain_variant == df.finetune_variant).all():
        return pd.DataFrame(columns=cols)
    keys = ["method", "task", "protocol", "pretrain_variant", "finetune_variant", *ctx, "label_budget"]
    paired = _mean_over_seeds(df, keys).merge(
        scratch.rename(columns={"value": "scratch"}), on=["task", "finetune_variant", *ctx, "label_budget"]
    )
    rows = []
    for key, g in paired.groupby(keys[:-1], dropna=False):
        budgets = sorted(int(b) for b in g.label_budget)
        rows.append(
            {
                **dict(zip(keys[:-1], key)),
                "budgets": f"{budgets[0]}-{budgets[-1]}" if len(budgets) > 1 else str(budgets[0]),
                "value": float(g.value.mean()),
                "scratch": float(g.scratch.mean()),
                "delta": float((g.value - g.scratch).mean()),
            }
        )
    return pd.DataFrame(rows, columns=[*cols[:5], *ctx, *cols[5:]])


def labels_saved(util: pd.DataFrame, pretrain_hours: dict, set_of_task: dict[str, str] | None = None) -> pd.DataFrame:
    """Compute accounting per method, task and protocol (and finetuning variant, pretraining variant
    and backbone, when the table has them): the most labels pretraining saves at any budget
    (n̂ − n = U·n, where U is defined), those labels per hour of pretraining compute, and the smallest
    budget from which pretraining stops paying (U ≤ 0 or worse than scratch everywhere above; empty if
    it pays at every budget run). ``pretrain_hours`` maps (method, set, variant, backbone) — the
    pretraining on the pretraining variant, else the finetuning one — or else the method alone to
    hours; ``set_of_task`` maps each task to the dataset set it reads (single or multi)."""
    set_of_task = set_of_task or {}

    ctx = [c for c in ("finetune_variant", "pretrain_variant", "backbone") if c in util.columns]
    cols = [
        "method",
        "task",
        "protocol",
        *ctx,
        "pretrain_hours",
        "max_labels_saved",
        "at_budget",
        "labels_saved_per_hour",
        "stops_paying_at",
    ]
    rows = []
    for key, g in util.groupby(["method", "task", "protocol", *ctx], dropna=False):
        method, task, protocol = key[:3]
        where = dict(zip(ctx, key[3:]))
        g = g.sort_values("label_budget")
        ok = g[g.status == OK]
        saved = (ok.utility * ok.label_budget).round(9)  # U = 0 up to float error saves nothing
        best = int(saved.idxmax()) if len(saved) and saved.max() > 0 else None
        dataset_set = set_of_task.get(task)
        variant = where.get("pretrain_variant") or where.get("finetune_variant")  # the data pretrained on
        own = (method, dataset_set, variant, str(where.get("backbone")).removesuffix("_split"))
        hours = pretrain_hours.get(own, pretrain_hours.get(method, math.nan))
        paying = ((g.status == "lower_bound") | ((g.status == OK) & (g.utility > 0))).to_numpy()
        budgets = g.label_budget.to_numpy()
        stop = next((int(budgets[i]) for i in range(len(g)) if not paying[i:].any()), None)
        rows.append(
            {
                "method": method,
                "task": task,
                "protocol": protocol,
                **where,
                "pretrain_hours": hours,
                "max_labels_saved": float(saved.max()) if best is not None else 0.0,
                "at_budget": int(g.label_budget[best]) if best is not None else None,
                "labels_saved_per_hour": (float(saved.max()) / hours if best is not None and hours > 0 else math.nan),
                "stops_paying_at": stop,
            }
        )
    return pd.DataFrame(rows, columns=cols)


def readout_table(readout: pd.DataFrame) -> pd.DataFrame:
    """What each init's frozen features keep of each scene factor (``selfsup readout``): the probe's
    test score, its chance level (majority class / R² 0) and the score above chance; factors a
    variant holds constant are left out."""
    cols = ["method", "variant", "backbone", "factor", "metric", "value", "chance", "above_chance", "n_test"]
    if readout.empty:
        return pd.DataFrame(columns=cols)
    df = readout[readout.status == "ok"]
    df = df.assign(above_chance=df.value - df.chance)
    return df.sort_values(["variant", "backbone", "factor", "method"])[cols].reset_index(drop=True)


def answer(util: pd.DataFrame, power: pd.DataFrame | None = None, chance: pd.DataFrame | None = None) -> list[str]:
    """The study's answer in a sentence per finetuned curve context (task, and variant where the
    table has several): at which budgets a method's 95 % interval shows a saving (above 0) or a loss
    (below 0), and otherwise the range of the intervals at the interior budgets and the smallest U
    the study's own seed noise could detect there (``power``, 80 %). Written from the data. Censored
    intervals make every budget honest evidence (an end of the curve only ever shows one sign)."""
    ft = util[(util.protocol == "finetune") & util.ci_low.notna()]
    if ft.empty:
        return ["No finetuned utility has an interval (fewer than 3 seeds), so this study gives no answer."]
    ctx = [c for c in ("finetune_variant",) if c in ft.columns and ft[c].nunique() > 1]
    if "pretrain_variant" in ft.columns and "finetune_variant" in ft.columns:
        pv = ft.pretrain_variant.fillna("").astype(str)
        if ((pv != "") & (pv != ft.finetune_variant.astype(str))).any():
            ctx.append("pretrain_variant")
    out = []
    for key, g in ft.groupby(["task", *ctx], sort=True):
        key = key if isinstance(key, tuple) else (key,)
        task = key[0]
        where = ", ".join(
            f"pretrained on {v}" if c == "pretrain_variant" else str(v) for c, v in zip(ctx, key[1:]) if v
        )
        label = f"{task} ({where})" if where else task
        if chance is not None and "learned" in chance.columns:
            c = chance[chance.task == task]
            learned = c.learned.iloc[0] if len(c) else None
            if learned is not None and not pd.isna(learned) and not bool(learned):
                r = c.iloc[0]
                out.append(
                    f"{label}: not learned at this compute (scratch's mean at its largest budget, {r.scratch_top:.3f}, "
                    f"is below twice the chance level {r.chance:.3f}), so its utility says nothing."
                )
                continue
        budgets = sorted(g.label_budget.unique())
        inner = g[(g.label_budget > budgets[0]) & (g.label_budget < budgets[-1])]
        found = []
        for r in g.sort_values(["label_budget", "method"]).itertuples():
            ci = format_interval(r.ci_low, r.ci_high, signed=True)
            if r.ci_low > 0:
                times = f"scratch needs {1 + r.utility:.1f}× the labels" if pd.notna(r.utility) else "a lower bound"
                u = f"{r.utility:+.2f}" if pd.notna(r.utility) else "n/a"
                found.append(f"{r.method} saves labels at {r.label_budget}: U = {u} {ci} ({times})")
            elif r.ci_high < 0:
                u = f"U = {r.utility:+.2f}" if pd.notna(r.utility) else "U below the scratch curve"
                found.append(f"{r.method} costs labels at {r.label_budget}: {u} {ci}")
        if inner.empty:
            head = f"{label}: " + ("; ".join(found) + ". " if found else "")
            out.append(
                head + f"The study has no interior budget ({', '.join(map(str, budgets))} labels are both ends of "
                "the scratch curve, where U is censored on one side), so it cannot measure a utility curve."
            )
            continue
        lo, hi = float(inner.ci_low.min()), float(inner.ci_high.max())
        n_in = sorted(int(b) for b in inner.label_budget.unique())
        span = f"{n_in[0]} labels" if len(n_in) == 1 else f"{n_in[0]}–{n_in[-1]} labels"
        mdu = ""
        if power is not None and not power.empty:
            p = power[(power.task == task) & power.label_budget.isin(n_in)]
            for c, v in zip(ctx, key[1:]):
                if c in p.columns:
                    p = p[p[c].astype(str) == str(v)]
            p = p.sort_values("label_budget")
            m = p.min_detectable_u.dropna()
            if len(m) and m.nunique() == 1 and len(m) == len(p):
                mdu = f"; the smallest U its seed noise detects there with 80 % power is {m.iloc[0]:.2f}"
            elif len(m):  # per budget, where they differ or some budget sees none
                vals = " / ".join("none" if pd.isna(v) else f"{v:.2f}" for v in p.min_detectable_u)
                at = " / ".join(str(int(b)) for b in p.label_budget)
                mdu = f"; the smallest U its seed noise detects with 80 % power is {vals} at {at} labels"
            elif len(p):  # the power analysis ran on this curve and found nothing it can see
                mdu = "; there its seed noise cannot detect even U = 4 with 80 % power"
        if found:
            out.append(f"{label}: " + "; ".join(found) + f" (interior budgets {span}{mdu}).")
        else:
            out.append(
                f"{label}: no method's utility differs measurably from 0 at any budget (interior budgets {span}: "
                f"the intervals together span {format_interval(lo, hi, signed=True)}{mdu})."
            )
    return out


def probe_contrast(util: pd.DataFrame) -> list[str]:
    """The paper's contrast on a study's own numbers, a sentence per task: how the linear probe ranks
    the pretrained methods (by mean metric, at the budgets both protocols ran) and whether finetuning
    tells the same methods apart (disjoint utility intervals). Needs ≥ 2 methods with both protocols."""
    out = []
    for task, g in util.groupby("task", sort=True):
        lin, ft = g[g.protocol == "linear"], g[(g.protocol == "finetune") & g.ci_low.notna()]
        methods = sorted(set(lin.method) & set(ft.method))
        budgets = sorted(set(lin.label_budget) & set(ft.label_budget))
        if len(methods) < 2 or not budgets:
            continue
        means = lin.pivot_table(index="label_budget", columns="method", values="value").reindex(budgets)[methods]
        orders = [tuple(r.sort_values(ascending=False).index) for _, r in means.iterrows()]
        order = max(set(orders), key=orders.count)
        lo = ft.pivot_table(index="label_budget", columns="method", values="ci_low").reindex(budgets)[methods]
        hi = ft.pivot_table(index="label_budget", columns="method", values="ci_high").reindex(budgets)[methods]
        apart = [int(b) for b in budgets if (lo.loc[b].max() > hi.loc[b].min())]
        gap = (means[order[0]] - means[order[-1]]).to_numpy()
        head = (
            f"{task}, linear probe against finetuning: the linear probe ranks {' > '.join(order)} at "
            f"{orders.count(order)} of {len(budgets)} budgets ({order[0]} ahead by {gap.min():.2f}–{gap.max():.2f}); "
        )
        if not apart:
            out.append(
                head + "finetuned, their utility intervals overlap at every budget, so here the linear "
                "ranking does not predict which pretraining saves more labels."
            )
        else:
            out.append(
                head + f"finetuned, their utility intervals are disjoint at {', '.join(map(str, apart))} labels."
            )
    return out
