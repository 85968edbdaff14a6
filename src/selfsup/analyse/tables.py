"""The report's tables, as pure functions: results (and MLflow runs) in, DataFrames out; no files.

:func:`report_tables` builds everything the report shows from the long results table
(``method, task, protocol, label_budget, seed, metric, value`` and context columns);
:mod:`selfsup.report` writes it. The paper's analyses (protocol agreement, factor effects, ...)
are in :mod:`selfsup.analyse.analysis`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from selfsup.analyse import analysis
from selfsup.analyse.power import power_table
from selfsup.analyse.utility import CONTEXT, LOWER_BOUND, OK, PRETRAINED_CONTEXT, mean_interval, utility_table
from selfsup.core import checks, schema
from selfsup.core.defaults import SCRATCH
from selfsup.core.errors import UserError
from selfsup.core.schema import RESULT_COLUMNS, ROW_CONTEXT

REQUIRED = list(RESULT_COLUMNS)
ROW_KEY = list(schema.ROW_KEY)


def where(row) -> str:
    """Where a results row came from, as errors name it: file:line (method/task/protocol, n, seed)."""
    src = row.get("source", "")
    line = row.get("source_line")
    at = f"{src}:{int(line)}" if src and not str(src).startswith("mlflow:") and pd.notna(line) else src
    return f"{at} ({row['method']}/{row['task']}/{row['protocol']}, n={row['label_budget']}, seed {row['seed']})"


def check_results(results: pd.DataFrame) -> None:
    """Refuse a results table the utility would silently get wrong, or that no run could have written:
    no rows, a value that is NaN or infinite, a label budget or seed that is not a whole number within
    its limits (:data:`selfsup.core.checks.LIMITS`), the same row twice, or a task with no scratch curve.
    (Tasks, metrics and their ranges: :func:`selfsup.report.load.check_metrics`, which knows the tasks.)"""
    if results.empty:
        raise UserError("no result rows to report")
    bad = ~np.isfinite(results["value"].to_numpy(dtype=float))
    if bad.any():
        r = results[bad].iloc[0]
        raise UserError(
            f"non-finite value {r['value']} ({r['metric']}) at {where(r)}: "
            f"{int(bad.sum())} such row(s); fix or remove them (a diverged run?)"
        )
    for column, limit in (("label_budget", "label budget"), ("seed", "seed")):
        for value in pd.unique(results[column]):
            try:
                checks.number(limit, value.item() if hasattr(value, "item") else value)
            except UserError as e:
                r = results[results[column] == value].iloc[0]
                raise UserError(f"{e} at {where(r)}") from None
    key = ROW_KEY + [c for c in ROW_CONTEXT if c in results.columns]
    dup = results.duplicated(key, keep="first")
    if dup.any():
        group = results.groupby(key, dropna=False, sort=False).ngroup()
        r = results[dup].iloc[0]
        first = results[group == group[dup].iloc[0]].iloc[0]
        raise UserError(
            f"duplicate result row {r['metric']} at {where(r)}, already given at "
            f"{where(first).split(' (')[0]}: {int(dup.sum())} duplicate(s)"
        )
    scratch_tasks = set(results.loc[results.method == SCRATCH, "task"])
    for task in sorted(set(results.task) - scratch_tasks):
        raise UserError(
            f"task {task!r} has no scratch results: utility needs the scratch curve "
            "(selfsup finetune without --init) among the results"
        )


def results_from_mlflow(runs: pd.DataFrame) -> pd.DataFrame:
    """The long results table rebuilt from MLflow: one row per test metric of every finished cell run
    (tags method, task, protocol, label_budget, seed), with its sweep's settings from the parent run."""
    if runs.empty or "tag.label_budget" not in runs.columns:
        return pd.DataFrame(columns=REQUIRED)
    parents = runs.set_index("run_id")
    rows = []
    for r in runs[(runs.stage == "cell") & (runs.status == "FINISHED")].to_dict("records"):
        parent = parents.loc[r["parent_id"]] if r.get("parent_id") in parents.index else None
        extra = {k: parent.get(f"param.{k}") for k in ROW_CONTEXT} if parent is not None else {}
        for key, value in r.items():
            if key.startswith("metric.test_") and pd.notna(value):
                rows.append(
                    {
                        "method": r["tag.method"],
                        "task": r["tag.task"],
                        "protocol": r["tag.protocol"],
                        "label_budget": int(r["tag.label_budget"]),
                        "seed": int(r["tag.seed"]),
                        "metric": key[len("metric.test_") :],
                        "value": float(value),
                        **{k: v for k, v in extra.items() if v is not None},
                        "source": f"mlflow:{r['run_id']}",
                    }
                )
    return pd.DataFrame(rows, columns=None if rows else REQUIRED)


COST_COLUMNS = ["rendered", "train_images", "train_gflop"]


def stage_times(runs: pd.DataFrame, dataset_hashes: set[str] | None = None) -> pd.DataFrame:
    """Compute accounting: wall time and device of every top-level stage run in MLflow (the latest
    run of each name: a stage run again replaces its earlier runs), only those on the datasets
    behind the reported results when ``dataset_hashes`` is given."""
    cols = ["stage", "run_name", "method", "set", "variant", "backbone", "dataset_hash", "start", "wall_s", "device"]
    cols += COST_COLUMNS
    if runs.empty:
        return pd.DataFrame(columns=cols)
    if dataset_hashes and "tag.dataset_hash" in runs.columns:
        runs = runs[runs["tag.dataset_hash"].isin(dataset_hashes) | (runs.stage == "report")]
    top = runs[
        runs.parent_id.isna()
        & (runs.status == "FINISHED")
        & runs.stage.isin(["render", "pretrain", "tune", "finetune", "probe", "report"])
    ]

    def col(name: str) -> pd.Series:
        return top[name] if name in top.columns else pd.Series(index=top.index, dtype=object)

    out = pd.DataFrame(
        {
            "stage": top.stage,
            "run_name": top.run_name,
            "method": col("tag.method"),
            "set": col("tag.set"),
            "variant": col("tag.variant"),
            "backbone": col("param.backbone"),
            "dataset_hash": col("tag.dataset_hash"),
            "start": top.start,
            "wall_s": top.wall_s.round(1),
            "device": col("param.device"),
        }
    )

    # the cost in machine-independent terms: images rendered; images through the training step and their
    # GFLOPs (torch's flop counter, forward and backward), a stage's own or the sum of its nested cells'
    def total(metric: str) -> pd.Series:
        own = col(f"metric.{metric}").astype(float)
        if f"metric.{metric}" in runs.columns:
            cells = runs[runs.parent_id.notna()].groupby("parent_id")[f"metric.{metric}"].sum(min_count=1)
            own = own.fillna(top.run_id.map(cells))
        return own

    out["rendered"] = pd.to_numeric(col("param.count"), errors="coerce").where(top.stage == "render")
    out["train_images"] = total("total_train_images")
    out["train_gflop"] = total("total_train_gflop").round(1)
    # a stage run again replaces its earlier runs: the same name on the same data and backbone
    out = out.sort_values("start").drop_duplicates(["stage", "run_name", "dataset_hash", "backbone"], keep="last")
    return out.sort_values("start")[cols].reset_index(drop=True)


def tuning_trials(runs: pd.DataFrame) -> pd.DataFrame:
    """Optuna studies recorded in MLflow and their trial budgets: scratch and every method should
    show the same number (a fair comparison)."""
    cols = ["study", "method", "task", "trials", "trial_runs"]
    if runs.empty or "param.study" not in runs.columns:
        return pd.DataFrame(columns=cols)
    studies = runs[runs.stage == "tune"]
    rows = [
        {
            "study": r["param.study"],
            "method": r.get("tag.method"),
            "task": r.get("tag.task"),
            "trials": int(r["param.trials"]),
            "trial_runs": int((runs.parent_id == r["run_id"]).sum()),
        }
        for r in studies.to_dict("records")
    ]
    return pd.DataFrame(rows, columns=cols)


def pretrain_hours(times: pd.DataFrame) -> dict:
    """Hours of the latest pretraining run per (method, set, variant, backbone family), and per method
    alone (the latest of any, for runs logged before set and variant were tagged)."""
    pre = times[times.stage == "pretrain"].dropna(subset=["method"]).sort_values("start")
    hours: dict = {m: float(g.wall_s.iloc[-1]) / 3600 for m, g in pre.groupby("method")}
    for r in pre.dropna(subset=["set", "variant", "backbone"]).to_dict("records"):
        hours[r["method"], r["set"], r["variant"], str(r["backbone"]).removesuffix("_split")] = r["wall_s"] / 3600
    return hours


def split_columns(df: pd.DataFrame) -> list[str]:
    """The context columns that tell one curve of ``df`` from another: those of ``CONTEXT`` that vary,
    and ``pretrain_variant`` where some backbone was pretrained on other data than it is finetuned on
    (the transfer study; elsewhere it only repeats the finetuning variant)."""
    ctx = [c for c in CONTEXT if c in df.columns and df[c].nunique() > 1]
    if "dataset_hash" in ctx:  # the hash tells curves apart only where one task and variant has two datasets
        by = [c for c in ("task", "finetune_variant") if c in df.columns]
        if not by or df.groupby(by, dropna=False)["dataset_hash"].nunique().max() <= 1:
            ctx.remove("dataset_hash")
    for c in PRETRAINED_CONTEXT:
        if c not in df.columns:
            continue
        pv = df[c].fillna("").astype(str)
        if "finetune_variant" in df.columns:
            other = ((pv != "") & (pv != df["finetune_variant"].astype(str))).any()
        else:  # one finetuning variant (not a column of its own here): several pretraining ones
            other = pv[pv != ""].nunique() > 1
        if other:
            ctx.append(c)
    return ctx


def groups(df: pd.DataFrame, keys: list[str]):
    """groupby over ``keys`` plus the context columns that vary (:func:`split_columns`); yields
    (label context dict, group)."""
    ctx = split_columns(df)
    for key, g in df.groupby(keys + ctx, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        yield dict(zip(keys + ctx, key)), g


def headline_numbers(util: pd.DataFrame, curves: pd.DataFrame) -> dict:
    """Numbers for ``dvc metrics show``: per method and task, the mean utility over budgets where
    it is defined, and the best metric of each curve."""
    out: dict = {"utility": {}, "best_metric": {}}
    keys = list(schema.CURVE_KEY)
    for k, g in groups(util, keys):
        ok = g[g.status == OK]
        out["utility"]["/".join(str(v) for v in k.values())] = {
            "mean_utility": round(float(ok.utility.mean()), 4) if len(ok) else None,
            "budgets_ok": int(len(ok)),
            "budgets_lower_bound": int((g.status == LOWER_BOUND).sum()),
        }
    for k, g in groups(curves, keys):
        out["best_metric"]["/".join(str(v) for v in k.values())] = round(float(g["mean"].max()), 4)
    return out


def chance_levels(results: pd.DataFrame, metric_of_task: dict[str, str]) -> pd.DataFrame:
    """Each task's headline metric beside its chance level (what a constant or majority predictor
    scores on the test split, from the results' ``chance`` column; the highest of the datasets' when the
    results hold several) and the best mean over seeds that any one curve point reaches."""
    cols = ["task", "metric", "chance", "best_mean", "best_by", "scratch_top", "learned"]
    rows = []
    for task, metric in metric_of_task.items():
        sel = results[(results.task == task) & (results.metric == metric)]
        if sel.empty:
            continue
        chance = sel["chance"].dropna() if "chance" in sel.columns else pd.Series(dtype=float)
        ctx = split_columns(sel)  # one curve per variant, ...: never a mean over datasets
        means = sel.groupby(["method", "protocol", "label_budget", *ctx], dropna=False)["value"].mean()
        best = means.idxmax()
        where = "".join(f", {k} {v}" for k, v in zip(ctx, best[3:]) if pd.notna(v) and v != "")
        # is the task learned at all? scratch's mean at its largest budget (the lowest over its curves)
        # against twice the chance level (SPEC §7: a default study runs only tasks it learns)
        scratch = means.xs(SCRATCH, level="method") if SCRATCH in means.index.get_level_values("method") else None
        top = float("nan")
        if scratch is not None:
            frame = scratch.reset_index()
            ends = frame.loc[
                frame.groupby([c for c in frame.columns if c not in ("label_budget", "value")], dropna=False)[
                    "label_budget"
                ].idxmax()
            ]
            top = float(ends.value.min())
        level = float(chance.max()) if len(chance) else float("nan")
        rows.append(
            {
                "task": task,
                "metric": metric,
                "chance": level,
                "best_mean": float(means.max()),
                "best_by": f"{best[0]} ({best[1]}, n={best[2]}{where})",
                "scratch_top": top,
                # judged where chance is a prior's accuracy (classification, pose); a dense metric's chance
                # (mIoU 0, the best constant depth's δ 0.78) makes "twice chance" trivial or impossible
                "learned": bool(top >= 2 * level)
                if metric == "accuracy" and np.isfinite(top) and np.isfinite(level)
                else None,
            }
        )
    return pd.DataFrame(rows, columns=cols)


@dataclass
class ReportTables:
    utility: pd.DataFrame  # utility.csv: U, n̂ and intervals per method, task, protocol, budget
    curves: pd.DataFrame  # curves.csv: the headline metric's mean ± s.d. and t interval over seeds per curve point
    analysis: dict[str, pd.DataFrame]  # NAME.csv: the paper's analyses, compute and tuning accounting
    metrics: dict  # metrics.json for `dvc metrics show`


@dataclass
class TableInputs:
    """What the report's tables are built from; ``table(name)`` builds one (once), so a table may use
    another."""

    results: pd.DataFrame
    metric_of_task: dict[str, str]
    util: pd.DataFrame
    curves: pd.DataFrame
    times: pd.DataFrame
    tuning: pd.DataFrame | None
    set_of_task: dict[str, str] | None
    readout: pd.DataFrame | None
    n_boot: int
    built: dict = field(default_factory=dict)

    def table(self, name: str) -> pd.DataFrame:
        if name not in self.built:
            self.built[name] = TABLE_SPECS[name].build(self)
        return self.built[name]


@dataclass(frozen=True)
class Table:
    """One analysis table of the report: written as NAME.csv; a section of the page under ``title``
    (none: a figure's data only), saying ``empty`` when it has no rows."""

    name: str
    build: Callable[[TableInputs], pd.DataFrame]
    title: str = ""
    empty: str = ""


# Every analysis table, in the page's order: a new table is one entry here.
TABLES = (
    Table(
        "chance",
        lambda t: chance_levels(t.results, t.metric_of_task),
        "Headline metrics and their chance levels (a constant or majority predictor on the test split)",
        "No results.",
    ),
    Table(
        "linear_probe_table",
        lambda t: analysis.probe_table(t.results, t.metric_of_task),
        "Linear probe per dataset variant and method at the largest budget probed (the "
        "paper's Table 1: every labelled training image, `selfsup probe --all-labels`)",
        "No linear-probe results (selfsup probe --protocol linear).",
    ),
    Table(
        "protocol_agreement",
        lambda t: analysis.protocol_agreement(t.results, t.metric_of_task),
        "Protocol study: rank agreement between protocols (Kendall τ, Spearman ρ, p-values)",
        "Needs at least two pretrained methods run under at least two protocols.",
    ),
    Table(
        "factor_summary",
        lambda t: analysis.factor_summary(t.table("factor_effects")),
        "Change of utility when one factor is switched on (the paper's Fig. 6): mean over pairs and budgets",
        "Needs results on dataset variants that differ in one factor.",
    ),
    Table(
        "factor_effects",
        lambda t: analysis.factor_effects(t.util),
        "Fig. 6 per variant pair and budget",
        "Needs results on dataset variants that differ in one factor.",
    ),
    Table(
        "frozen_blocks",
        lambda t: analysis.frozen_table(t.results, t.metric_of_task),
        "Frozen stages (the paper's Fig. 8)",
        "Needs finetune and frozen-k results of the same method.",
    ),
    Table(
        "backbones",
        lambda t: analysis.backbone_table(t.results, t.metric_of_task),
        "Backbones",
        "Needs results of at least two backbones.",
    ),
    Table(
        "transfer",
        lambda t: analysis.transfer_matrix(t.results, t.metric_of_task),
        "Cross-dataset transfer (the paper's Fig. 9): mean change against scratch over budgets",
        "Needs backbones pretrained on another variant than the one finetuned on.",
    ),
    Table(
        "readout",
        lambda t: analysis.readout_table(t.readout if t.readout is not None else pd.DataFrame()),
        "Factor read-out: what each init's frozen features keep of every scene factor (test split)",
        "No factor read-out (selfsup readout) among the results.",
    ),
    Table(
        "labels_saved",
        lambda t: analysis.labels_saved(t.util, pretrain_hours(t.times), t.set_of_task),
        "Labels saved per hour of pretraining, and where pretraining stops paying",
        "No utility to account.",
    ),
    Table(
        "compute",
        lambda t: t.times,
        "Compute: wall time and device of every stage (from MLflow)",
        "No stage runs in the MLflow experiment.",
    ),
    Table(
        "tuning",
        lambda t: t.tuning if t.tuning is not None else tuning_trials(pd.DataFrame()),
        "Hyperparameter search: trials per study (the same for scratch and every method)",
        "No Optuna studies in the MLflow experiment (selfsup tune).",
    ),
    # the study's own power: per scratch curve point, U = 1's detection rate and the minimum detectable U,
    # simulated from the measured seed s.d. (n_boot / 5 studies of min(n_boot, 400) draws); drawn as a figure
    Table("power", lambda t: power_table(t.curves, studies=max(20, t.n_boot // 5), draws=min(t.n_boot, 400))),
)
TABLE_SPECS = {t.name: t for t in TABLES}


def series_label(method: str, protocol: str, context: dict | None = None) -> str:
    """One curve's name: the method, its protocol unless finetune, and its context (variant, ...,
    "pretrained on" the pretraining variant where it is given)."""
    name = method if protocol == "finetune" else f"{method} ({protocol})"
    context = context or {}
    parts = [
        f"data {str(v)[:8]}" if k == "dataset_hash" else str(v)
        for k, v in context.items()
        if k in CONTEXT and pd.notna(v)
    ]
    parts += [f"pretrained on {v}" for k, v in context.items() if k in PRETRAINED_CONTEXT and pd.notna(v) and v != ""]
    ctx = ", ".join(parts)
    return f"{name} [{ctx}]" if ctx else name


def dvc_plot_tables(curves: pd.DataFrame, util: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """``plots/curves/TASK.csv`` (label_budget, series, mean, ci_low, ci_high) and
    ``plots/utility/TASK.csv`` (label_budget, series, utility, ci_low, ci_high): long tables that DVC's
    template ``selfsup_curves`` draws one line per series, and per revision in ``dvc plots diff``."""
    out = {}
    for kind, table, value in (("curves", curves, "mean"), ("utility", util, "utility")):
        for task, g in table.groupby("task", sort=True):
            ctx = split_columns(g)
            rows = pd.DataFrame(
                {
                    "label_budget": g["label_budget"].astype(int),
                    "series": [
                        series_label(r.method, r.protocol, r._asdict())
                        for r in g[["method", "protocol", *ctx]].itertuples()
                    ],
                    value: g[value],
                    "ci_low": g["ci_low"],
                    "ci_high": g["ci_high"],
                }
            )
            out[f"plots/{kind}/{task}.csv"] = rows.sort_values(["series", "label_budget"]).reset_index(drop=True)
    return out


def report_tables(
    results: pd.DataFrame,
    metric_of_task: dict[str, str],
    interpolation: str,
    n_boot: int,
    times: pd.DataFrame,
    tuning: pd.DataFrame | None = None,
    set_of_task: dict[str, str] | None = None,
    readout: pd.DataFrame | None = None,
) -> ReportTables:
    """Every table of the report from checked results, each task's headline metric (and the dataset
    set it reads) and the stage times (:func:`stage_times`)."""
    results = results.fillna({c: "" for c in PRETRAINED_CONTEXT if c in results.columns})  # scratch has none
    util = utility_table(results, metric_of_task, interpolation, n_boot)
    sel = analysis.headline_rows(results, metric_of_task)
    # curves are split by variant / backbone / width (and pretraining variant) only where they vary
    ctx = split_columns(sel)
    curves = (
        sel.groupby([*schema.CURVE_KEY, *ctx, "label_budget"])["value"]
        .agg(
            mean="mean",
            std="std",
            seeds="count",
            ci_low=lambda v: mean_interval(v)[0],
            ci_high=lambda v: mean_interval(v)[1],
        )
        .reset_index()
    )
    inputs = TableInputs(results, metric_of_task, util, curves, times, tuning, set_of_task, readout, n_boot)
    tables = {spec.name: inputs.table(spec.name) for spec in TABLES}
    metrics = headline_numbers(util, curves)
    metrics["chance"] = {
        r.task: (None if np.isnan(r.chance) else round(r.chance, 4)) for r in tables["chance"].itertuples()
    }
    return ReportTables(util, curves, tables, metrics)
