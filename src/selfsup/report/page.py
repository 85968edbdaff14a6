"""Writing the report: the tables of :mod:`selfsup.tables` as CSV, ``metrics.json`` for DVC, and an
offline HTML page of plotly figures, staged in a hidden folder and swapped in when complete.

Reads any ``results.csv`` in the long format (``method, task, protocol, label_budget, seed,
metric, value``), so a table from another tool can be reported too.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from selfsup.analyse import analysis
from selfsup.analyse.power import POWER_VALUES
from selfsup.analyse.tables import (
    COST_COLUMNS,
    REQUIRED,
    TABLES,
    check_results,
    dvc_plot_tables,
    groups,
    report_tables,
    results_from_mlflow,
    series_label,
    stage_times,
    tuning_trials,
)
from selfsup.analyse.utility import (
    INTERPOLATIONS,
    LOWER_BOUND,
    OK,
    PRETRAINED_CONTEXT,
    TOO_FEW_SEEDS,
    UNDEFINED,
    format_interval,
)
from selfsup.core import checks, tracking
from selfsup.core.defaults import PREDICTIONS, READOUT_FILE, SCRATCH
from selfsup.core.errors import UserError
from selfsup.core.provenance import atomic_write_json, atomic_write_text, staged_folder
from selfsup.evaluate.tasks import TASKS

EXPORT_FORMATS = ("png", "svg")


def load_results(paths: list[str | Path]) -> pd.DataFrame:
    """Concatenate ``results.csv`` files; a folder means every ``results.csv`` below it."""
    if not paths:
        raise UserError("give at least one results file or folder")
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.rglob("results.csv"))
            if not found:
                raise UserError(f"no results.csv under folder {str(p)!r}")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"results path {str(p)!r} does not exist")
    frames = []
    for f in files:
        try:
            df = pd.read_csv(f)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read results file {str(f)!r}: {str(e).splitlines()[0]}") from None
        missing = [c for c in REQUIRED if c not in df.columns]
        if missing:
            raise UserError(f"results file {str(f)!r} lacks column(s) {', '.join(missing)}")
        for col in ("label_budget", "value"):
            bad = pd.to_numeric(df[col], errors="coerce").isna() & df[col].notna()
            if bad.any():
                raise UserError(f"results file {str(f)!r}: non-numeric {col} {df[col][bad].iloc[0]!r}")
        if df.empty:
            raise UserError(f"results file {str(f)!r} has no rows")
        df["source"] = str(f)
        df["source_line"] = range(2, len(df) + 2)  # the line in the file (after the header)
        frames.append(df)
    res = pd.concat(frames, ignore_index=True)
    res["label_budget"] = res["label_budget"].astype(int)
    res["value"] = res["value"].astype(float)
    return res


def load_readouts(paths: list[str | Path]) -> pd.DataFrame:
    """Every ``readout.csv`` (``selfsup readout``) below the results folders given; empty if none."""
    files = sorted(f for p in map(Path, paths or []) if p.is_dir() for f in p.rglob(READOUT_FILE))
    frames = []
    for f in files:
        try:
            frames.append(pd.read_csv(f).assign(source=str(f)))
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read read-out file {str(f)!r}: {str(e).splitlines()[0]}") from None
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_predictions(paths: list[str | Path]) -> list[dict]:
    """The prediction records (``OUT/predictions/*.npz`` of finetune folders) beside the results
    files given or below the folders given."""
    import numpy as np

    found = set()
    for p in map(Path, paths or []):
        if p.is_dir():
            found |= set(p.rglob(f"{PREDICTIONS}/*.npz"))
        elif p.is_file():
            found |= set((p.parent / PREDICTIONS).glob("*.npz"))
    records = []
    for f in sorted(found):
        try:
            with np.load(f) as z:
                records.append({k: (z[k].item() if z[k].ndim == 0 else z[k]) for k in z.files})
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read prediction file {str(f)!r}: {e}") from None
    return records


def headline_metric(task: str, results: pd.DataFrame) -> str:
    """The task's registered headline metric, else the first metric the table has for it."""
    if task in TASKS.names():
        return TASKS.create(task).metric
    return str(results.loc[results.task == task, "metric"].iloc[0])


def make_report(
    paths: list[str | Path],
    out: str | Path,
    interpolation: str = "log",
    n_boot: int = 1000,
    mlflow_experiment: str | None = None,
    export: tuple[str, ...] = (),
    compute: str | Path | None = None,
) -> dict:
    """Write ``utility.csv``, ``curves.csv``, ``metrics.json``, the analysis tables and ``index.html``
    to ``out``. Results come from ``paths`` (results.csv files or folders) and, with
    ``mlflow_experiment``, from that experiment's cell runs; compute accounting reads the stage runs
    of the current tracking store, or ``compute`` (an earlier report's ``compute.csv``) when the runs
    behind the results are not at hand (a committed study's report rebuilt from its results)."""
    if interpolation not in INTERPOLATIONS:
        raise UserError(f"unknown interpolation {interpolation!r}: choose from {', '.join(INTERPOLATIONS)}")
    bad = [f for f in export if f not in EXPORT_FORMATS]
    if bad:
        raise UserError(f"unknown export format {bad[0]!r}: choose from {', '.join(EXPORT_FORMATS)}")
    checks.numbers(bootstrap=n_boot)
    out = checks.output_folder(out, "report folder")
    stored_times = load_compute(compute) if compute else None
    frames = [load_results(paths)] if paths else []  # bad files fail before MLflow is opened
    if frames and not mlflow_experiment:
        check_results(frames[0])
    runs = tracking.experiment_runs(mlflow_experiment)
    if mlflow_experiment:
        from_mlflow = results_from_mlflow(runs)
        if from_mlflow.empty:
            raise UserError(f"no finished finetune or probe cells in MLflow experiment {mlflow_experiment!r}")
        frames.append(from_mlflow)
    if not frames:
        raise UserError("give results files or folders (--results) or an MLflow experiment (--mlflow-experiment)")
    results = pd.concat(frames, ignore_index=True)
    results["label_budget"] = results["label_budget"].astype(int)
    results["value"] = results["value"].astype(float)
    if mlflow_experiment:  # files alone were checked above, before MLflow was opened
        check_results(results)
    with tracking.run(
        "report",
        {
            "results": ",".join(map(str, paths)),
            "interpolation": interpolation,
            "n_boot": n_boot,
            "out": str(out),
            "mlflow_experiment": mlflow_experiment or "",
        },
        run_name="report",
    ):
        hashes = {
            str(h)
            for col in ("dataset_hash", "pretrain_dataset_hash")
            if col in results.columns
            for h in results[col].dropna()
            if str(h)
        }
        readout, predictions = load_readouts(paths), load_predictions(paths)
        with staged_folder(out) as stage:  # a failure half-way leaves the previous report whole
            metrics = _write_report(
                results,
                stage,
                interpolation,
                n_boot,
                stored_times if stored_times is not None else stage_times(runs, hashes),
                export,
                tuning_trials(runs),
                readout,
                predictions,
            )
        for name in ("utility.csv", "curves.csv", "metrics.json", "index.html"):
            tracking.log_artifact(Path(out) / name)
    return metrics


def load_compute(path: str | Path) -> pd.DataFrame:
    """The stage times of an earlier report (its ``compute.csv``), checked for the columns it needs."""
    cols = [c for c in stage_times(pd.DataFrame()).columns if c not in COST_COLUMNS]  # older tables lack the cost
    p = Path(path)
    if not p.is_file():
        raise UserError(f"compute table {str(p)!r} does not exist (give an earlier report's compute.csv)")
    try:
        df = pd.read_csv(p, dtype={"dataset_hash": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"compute table {str(p)!r} is not a readable CSV: {str(e).splitlines()[0]}") from None
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise UserError(f"compute table {str(p)!r} lacks the column(s) {', '.join(missing)}")
    return df.reindex(columns=[*cols, *(c for c in COST_COLUMNS if c in df.columns)])


def _write_report(
    results: pd.DataFrame,
    out: Path,
    interpolation: str,
    n_boot: int,
    times: pd.DataFrame,
    export: tuple[str, ...] = (),
    tuning: pd.DataFrame | None = None,
    readout: pd.DataFrame | None = None,
    predictions: list[dict] | None = None,
) -> dict:
    """Build every table (pure: :func:`selfsup.tables.report_tables`), then write the files and the page."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metric_of_task = {t: headline_metric(t, results) for t in sorted(results.task.unique())}
    set_of_task = {t: TASKS.create(t).dataset_set for t in metric_of_task if t in TASKS.names()}
    built = report_tables(results, metric_of_task, interpolation, n_boot, times, tuning, set_of_task, readout)
    util, curves, tables = built.utility, built.curves, built.analysis
    atomic_write_text(out / "utility.csv", util.to_csv(index=False))
    atomic_write_text(out / "curves.csv", curves.to_csv(index=False))
    for name, table in tables.items():
        atomic_write_text(out / f"{name}.csv", table.to_csv(index=False))
    for name, table in dvc_plot_tables(curves, util).items():  # `dvc plots show / diff` (template selfsup_curves)
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / name, table.to_csv(index=False))
    atomic_write_json(out / "metrics.json", built.metrics)
    figures = (
        _figures(curves, util, metric_of_task, tables["chance"], tables["power"])
        + _analysis_figures(tables)
        + _prediction_figures(predictions or [])
    )
    _write_html(out, results, curves, util, metric_of_task, interpolation, built.metrics, tables, figures)
    if export:
        _export(out, figures, export)
    return built.metrics


def _scratch_budgets(curves: pd.DataFrame, task: str, context: dict) -> list[int]:
    """The budgets of the scratch curve of ``task`` in ``context`` (the curve keys other than the
    method, protocol and pretraining data; all scratch curves of the task where it is empty)."""
    sel = curves[(curves.task == task) & (curves.method == SCRATCH)]
    for key, v in context.items():
        if key in sel.columns and key not in ("method", "protocol", *PRETRAINED_CONTEXT):
            sel = sel[sel[key].astype(str) == str(v)]
    return sorted(int(b) for b in sel.label_budget.unique())


def _figures(
    curves: pd.DataFrame,
    util: pd.DataFrame,
    metric_of_task: dict[str, str],
    chance: pd.DataFrame | None = None,
    power: pd.DataFrame | None = None,
) -> list[tuple[str, object]]:
    import plotly.graph_objects as go

    figs = []
    for task, metric in metric_of_task.items():
        fig = go.Figure()
        for k, g in groups(curves[curves.task == task], ["method", "protocol"]):
            fig.add_trace(
                go.Scatter(
                    x=g.label_budget,
                    y=g["mean"],
                    name=series_label(k["method"], k["protocol"], k),
                    mode="lines+markers",
                    error_y=dict(type="data", array=g["std"].fillna(0), visible=True),
                )
            )
        level = chance.set_index("task").chance.get(task, float("nan")) if chance is not None else float("nan")
        if pd.notna(level):
            fig.add_hline(
                y=level, line_dash="dot", line_color="grey", annotation_text=f"chance {level:.3f} (constant predictor)"
            )
        fig.update_layout(
            title=f"{task}: test {metric} vs labels (mean ± s.d. over seeds)",
            xaxis=dict(type="log", title="labelled training images"),
            yaxis_title=metric,
            template="plotly_white",
        )
        figs.append((f"{task}-metric", fig))
        u = util[util.task == task]
        if u.empty:
            continue
        fig = go.Figure()
        finite = np.concatenate([u.utility.to_numpy(float), u.ci_low.to_numpy(float), u.ci_high.to_numpy(float)])
        finite = finite[np.isfinite(finite)]
        top = float(finite.max()) + 1.0 if finite.size else 1.0  # where an open (+∞) upper end is drawn to
        for k, g in groups(u, ["method", "protocol"]):
            name = series_label(k["method"], k["protocol"], k)
            ok, lb, below = g[g.status == OK], g[g.status == LOWER_BOUND], g[g.status == UNDEFINED]
            # an open end (−∞ / +∞: censored draws) is drawn to U = −1 (n̂ = 0) or to the top of the axis
            lo, hi = ok.ci_low.clip(lower=-1.0), ok.ci_high.clip(upper=top)
            fig.add_trace(
                go.Scatter(
                    x=ok.label_budget,
                    y=ok.utility,
                    name=name,
                    mode="lines+markers",
                    text=[format_interval(a, b) or TOO_FEW_SEEDS for a, b in zip(ok.ci_low, ok.ci_high)],
                    hovertemplate="n = %{x}: U = %{y:.2f}, 95 % interval %{text}",
                    error_y=dict(
                        type="data",
                        symmetric=False,
                        array=(hi - ok.utility).fillna(0),
                        arrayminus=(ok.utility - lo).fillna(0),
                        visible=True,
                    ),
                )
            )
            if len(lb):
                fig.add_trace(
                    go.Scatter(
                        x=lb.label_budget,
                        y=lb.utility,
                        name=f"{name}: lower bound",
                        mode="markers",
                        marker=dict(color="lightgrey", symbol="triangle-up", size=12, line=dict(color="grey", width=1)),
                    )
                )
            if len(below):  # below the scratch curve's smallest point: U < n_min/n − 1
                n_min = float(min(_scratch_budgets(curves, task, k), default=np.nan))
                fig.add_trace(
                    go.Scatter(
                        x=below.label_budget,
                        y=n_min / below.label_budget - 1.0,
                        name=f"{name}: upper bound",
                        mode="markers",
                        marker=dict(
                            color="lightgrey", symbol="triangle-down", size=12, line=dict(color="grey", width=1)
                        ),
                    )
                )
        mdu = power[(power.task == task)].dropna(subset=["min_detectable_u"]) if power is not None else None
        if mdu is not None and len(mdu):  # below this band a true U is detected with < 80 % power
            by = [c for c in mdu.columns if c not in ("task", *POWER_VALUES)]
            for _, band in mdu.groupby(by, dropna=False, sort=True) if by else [((), mdu)]:
                fig.add_trace(
                    go.Scatter(
                        x=band.label_budget,
                        y=band.min_detectable_u,
                        name="minimum detectable U (80 % power, this study's seed noise)",
                        mode="lines+markers",
                        line=dict(color="rgba(120,120,120,0.6)", dash="dash"),
                        fill="tozeroy",
                        fillcolor="rgba(160,160,160,0.15)",
                    )
                )
        ends = _scratch_budgets(curves, task, {})
        for n in sorted({min(ends), max(ends)} if ends else set()):
            # the paper greys out where U cannot be computed: at both ends of the scratch curve the
            # interval is censored (pretrained draws beyond the curve are only known to lie beyond it)
            fig.add_vrect(x0=n / 1.2, x1=n * 1.2, fillcolor="lightgrey", opacity=0.35, line_width=0, layer="below")
        fig.add_hline(y=0, line_dash="dot", line_color="grey")
        fig.update_layout(
            title=f"{task}: utility U(n) = n̂/n − 1 (grey: ends of the scratch curve, where U is censored)",
            xaxis=dict(type="log", title="labelled training images"),
            yaxis_title="utility",
            template="plotly_white",
        )
        figs.append((f"{task}-utility", fig))
    return figs


def _analysis_figures(tables: dict[str, pd.DataFrame]) -> list[tuple[str, object]]:
    import plotly.graph_objects as go

    figs = []
    agree = tables["protocol_agreement"]
    if not agree.empty:
        fig = go.Figure()
        for (a, b), g in agree.groupby(["protocol_a", "protocol_b"]):
            for task, h in g.groupby("task"):
                fig.add_trace(
                    go.Scatter(x=h.label_budget, y=h.kendall_tau, mode="lines+markers", name=f"{task}: {a} vs {b}")
                )
        fig.update_layout(
            title="Protocol study: Kendall τ between the method rankings of two protocols",
            xaxis=dict(type="log", title="labelled training images"),
            yaxis=dict(range=[-1.05, 1.05]),
            yaxis_title="Kendall τ",
            template="plotly_white",
        )
        figs.append(("protocol-agreement", fig))
    frozen = tables["frozen_blocks"]
    if not frozen.empty:
        fig = go.Figure()
        for (method, task, budget), g in frozen.groupby(["method", "task", "label_budget"]):
            fig.add_trace(
                go.Scatter(x=g.frozen_blocks, y=g.delta, mode="lines+markers", name=f"{method}/{task} n={budget}")
            )
        fig.update_layout(
            title="Frozen blocks k: change in the test metric against finetuning every weight (k = 0)",
            xaxis=dict(title="frozen blocks (the stem and blocks 1..k; 3 = only the head trains)", dtick=1),
            yaxis_title="Δ test metric",
            template="plotly_white",
        )
        figs.append(("frozen-blocks", fig))
    summary = tables["factor_summary"]
    if not summary.empty:
        fig = go.Figure()
        for (method, task, protocol), g in summary.groupby(["method", "task", "protocol"]):
            err = dict(
                type="data",
                symmetric=False,
                array=(g.ci_high - g.delta_utility).fillna(0),
                arrayminus=(g.delta_utility - g.ci_low).fillna(0),
            )
            fig.add_trace(
                go.Bar(x=g.factor, y=g.delta_utility, error_y=err, name=f"{series_label(method, protocol)} / {task}")
            )
        fig.update_layout(
            title="Change in utility when one factor is switched on (mean over variant pairs and budgets, 95 % t)",
            barmode="group",
            xaxis_title="factor (T texture, C colour, V viewpoint, L lighting)",
            yaxis_title="Δ utility",
            template="plotly_white",
        )
        figs.append(("factor-effects", fig))
    transfer = tables["transfer"]
    if not transfer.empty:
        for (method, task, protocol), g in transfer.groupby(["method", "task", "protocol"]):
            m = g.pivot_table(index="pretrain_variant", columns="finetune_variant", values="delta")
            fig = go.Figure(
                go.Heatmap(
                    z=m.values,
                    x=list(m.columns),
                    y=list(m.index),
                    colorscale="RdBu",
                    zmid=0,
                    text=m.round(3).values,
                    texttemplate="%{text}",
                )
            )
            fig.update_layout(
                title=f"Transfer: {series_label(method, protocol)} on {task}, mean change against scratch over budgets "
                f"{g.budgets.iloc[0]} (rows: pretrained on, columns: finetuned on)",
                template="plotly_white",
            )
            figs.append((f"transfer-{method}-{task}-{protocol}", fig))
    readout = tables["readout"]
    if not readout.empty:
        for (variant, backbone), g in readout.groupby(["variant", "backbone"]):
            fig = go.Figure(
                [
                    go.Bar(x=m.factor, y=m.above_chance, name=method, customdata=m[["metric", "value", "chance"]])
                    for method, m in g.groupby("method")
                ]
            )
            fig.update_traces(hovertemplate="%{x}: %{customdata[0]} %{customdata[1]:.3f} (chance %{customdata[2]:.3f})")
            fig.update_layout(
                title=f"What the frozen features keep ({variant}, {backbone}): linear read-out of each scene factor, "
                "above chance (accuracy − majority class; R² − 0)",
                barmode="group",
                xaxis_title="scene factor",
                yaxis_title="score above chance",
                template="plotly_white",
            )
            figs.append((f"readout-{variant}-{backbone}", fig))
    saved = tables["labels_saved"]
    if not saved.empty and saved.max_labels_saved.max() > 0:
        fig = go.Figure(
            [go.Bar(x=g.task + " " + g.protocol, y=g.max_labels_saved, name=m) for m, g in saved.groupby("method")]
        )
        fig.update_layout(
            title="Most labels saved at any budget (n̂ − n)",
            barmode="group",
            yaxis_title="labels",
            template="plotly_white",
        )
        figs.append(("labels-saved", fig))
    return figs


def _prediction_figures(records: list[dict]) -> list[tuple[str, object]]:
    """The gallery, from the prediction records of finetune folders (first seed, smallest and largest
    budget, finetuning on the pretraining's own variant): for every dense task, the first test
    images, their target maps and each init's predicted maps; for every image-level classification
    task, each init's confusion matrix (rows: true class, normalised per row)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    by_task: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        if r["protocol"] == "finetune" and r["pretrain_variant"] in ("", r["finetune_variant"]):
            by_task.setdefault((r["task"], r["finetune_variant"]), []).append(r)
    figs = []
    for (task, variant), rs in sorted(by_task.items()):
        rs = sorted(rs, key=lambda r: (r["method"] != SCRATCH, r["method"], int(r["label_budget"])))
        names = [f"{r['method']} n={int(r['label_budget'])}" for r in rs]
        if "images" in rs[0]:
            images, truth = rs[0]["images"], rs[0]["truth"]
            rows, cols = len(images), 2 + len(rs)
            fig = make_subplots(
                rows,
                cols,
                subplot_titles=["input", "target", *names] + [""] * (rows - 1) * cols,
                horizontal_spacing=0.01,
                vertical_spacing=0.02,
            )
            seg = truth.dtype.kind in "iu"
            zmin, zmax = (0, 10) if seg else (float(truth.min()), float(truth.max()))
            scale = "Turbo" if seg else "Viridis"
            for i in range(rows):
                fig.add_trace(go.Image(z=images[i]), i + 1, 1)
                for j, m in enumerate([truth[i], *(r["pred"][i] for r in rs)]):
                    fig.add_trace(
                        go.Heatmap(z=m, zmin=zmin, zmax=zmax, colorscale=scale, showscale=(i == 0 and j == 0)),
                        i + 1,
                        j + 2,
                    )
            fig.update_xaxes(visible=False)
            fig.update_yaxes(visible=False, autorange="reversed")
            what = "class per cell (0 = background)" if seg else "depth per cell"
            fig.update_layout(
                title=f"{task} ({variant}): test images, target and predicted {what}, first seed",
                height=170 * rows + 80,
                template="plotly_white",
            )
            figs.append((f"gallery-{task}-{variant}", fig))
        elif "confusion" in rs[0]:
            budgets = sorted({int(r["label_budget"]) for r in rs})
            methods = list(dict.fromkeys(r["method"] for r in rs))
            titles = []
            for method in methods:
                for b in budgets:
                    c = next(
                        (r["confusion"] for r in rs if r["method"] == method and int(r["label_budget"]) == b), None
                    )
                    acc = f" acc {c.trace() / max(c.sum(), 1):.2f}" if c is not None else ""
                    titles.append(f"{method} n={b}{acc}")
            fig = make_subplots(len(methods), len(budgets), subplot_titles=titles)
            for r in rs:
                c = r["confusion"].astype(float)
                recall = c / c.sum(1, keepdims=True).clip(min=1)
                fig.add_trace(
                    go.Heatmap(z=recall, zmin=0, zmax=1, colorscale="Blues", showscale=False),
                    methods.index(r["method"]) + 1,
                    budgets.index(int(r["label_budget"])) + 1,
                )
            fig.update_xaxes(title_text="predicted", dtick=1)
            fig.update_yaxes(title_text="true", dtick=1, autorange="reversed")
            fig.update_layout(
                title=f"{task} ({variant}): confusion matrices on the test split, first seed (rows normalised)",
                height=260 * len(methods) + 80,
                template="plotly_white",
            )
            figs.append((f"confusion-{task}-{variant}", fig))
    return figs


def _ci(r) -> str:
    """ ", 95 % interval [a, b]" of a utility row (an open end is ∓∞; censored draws), or nothing."""
    ci = format_interval(r.ci_low, r.ci_high)
    return f", 95 % interval {ci}" if ci else ""


def _findings(util: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> list[str]:
    """Headline findings in numbers, one sentence each."""
    lines = []
    for k, g in groups(util, ["task", "protocol"]):
        n0 = int(g.label_budget.min())
        first = g[g.label_budget == n0].sort_values("utility", ascending=False, na_position="last")
        parts = []
        for r in first.itertuples():
            if r.status == OK:
                ci = (
                    f" {format_interval(r.ci_low, r.ci_high)}"
                    if pd.notna(r.ci_low)
                    else f" (too few seeds for an interval: {r.seeds})"
                )
                parts.append(f"{r.method} U = {r.utility:.2f}{ci}")
            elif r.status == LOWER_BOUND:
                parts.append(f"{r.method} U ≥ {r.utility:.2f} (beats every scratch run){_ci(r)}")
            else:
                parts.append(f"{r.method}: below scratch's smallest budget, U < {n0 / r.label_budget - 1:.2f}{_ci(r)}")
        where = series_label(k["task"], k["protocol"], k).replace(f" ({k['protocol']})", f", {k['protocol']}")
        lines.append(f"{where}, {n0} labels: " + "; ".join(parts) + ".")
    saved = tables["labels_saved"]
    for r in saved.itertuples():
        if r.stops_paying_at is not None and not pd.isna(r.stops_paying_at):
            lines.append(f"{r.method} on {r.task} ({r.protocol}) stops paying at {int(r.stops_paying_at)} labels.")
    agree = tables["protocol_agreement"]
    if not agree.empty:
        lines.append(
            f"Method rankings by different protocols: mean Kendall τ {agree.kendall_tau.mean():+.2f} over "
            f"{len(agree)} (task, budget, protocol pair) comparisons"
            f"{' (2 methods only: τ is ±1)' if agree.methods.max() < 3 else ''}."
        )
    return lines


def _table_html(df: pd.DataFrame, empty_note: str) -> str:
    if df.empty:
        return f"<p class='note'>{html.escape(empty_note)}</p>"
    return df.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="–", border=0, classes="data")


def _template():
    """The page's template (templates/report.html), escaping every value but the HTML it is given."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("selfsup.report", "templates"), autoescape=True, keep_trailing_newline=True
    )
    return env.get_template("report.html")


def _write_html(
    out: Path,
    results,
    curves,
    util,
    metric_of_task,
    interpolation: str,
    metrics: dict,
    tables: dict[str, pd.DataFrame],
    figures,
) -> None:
    import plotly.offline

    (out / "plotly.min.js").write_text(plotly.offline.get_plotlyjs())  # once, beside the page: opens offline
    parts = [
        fig.to_html(full_html=False, include_plotlyjs=False, div_id=name, config={"displaylogo": False})
        for name, fig in figures
    ]
    # the answer's figures (each task's utility, with its censored ends and detectable band, and its
    # curves) come right below it; the analysis figures follow under "Figures"
    first = [p for (name, _), p in zip(figures, parts) if name.endswith(("-utility", "-metric"))]
    parts = [p for (name, _), p in zip(figures, parts) if not name.endswith(("-utility", "-metric"))]
    answer = analysis.answer(util, tables.get("power"), tables.get("chance")) + analysis.probe_contrast(util)
    headline = [
        {
            "key": key,
            "mean": "n/a" if v["mean_utility"] is None else f"{v['mean_utility']:+.2f}",
            "ok": v["budgets_ok"],
            "lower": v["budgets_lower_bound"],
        }
        for key, v in metrics["utility"].items()
    ]
    data_cols = [c for c in ("finetune_variant", "dataset_hash") if c in results.columns]
    datasets = (
        results.groupby(["task", *data_cols]).size().reset_index()[["task", *data_cols]]
        if data_cols
        else pd.DataFrame()
    )
    page = _template().render(
        answer=answer,
        first=first,
        rest=parts,
        methods=sorted(results.method.unique()),
        tasks=[f"{t} ({m})" for t, m in metric_of_task.items()],
        protocols=sorted(results.protocol.unique()),
        budgets=[str(b) for b in sorted(results.label_budget.unique())],
        seeds=[str(s) for s in sorted(results.seed.unique())],
        n_rows=len(results),
        n_sources=results.source.nunique() if "source" in results else 1,
        datasets=_table_html(datasets, "Datasets not recorded in the results."),
        interpolation=interpolation,
        findings=_findings(util, tables),
        headline=headline,
        sections=[
            {"title": t.title, "name": t.name, "html": _table_html(tables[t.name], t.empty)} for t in TABLES if t.title
        ],
    )
    atomic_write_text(out / "index.html", page)


def _export(out: Path, figures, formats: tuple[str, ...]) -> None:
    """Every figure as PNG / SVG in ``OUT/figures`` with kaleido (it drives a headless Chromium:
    set ``BROWSER_PATH`` to Debian's ``/usr/bin/chromium`` if kaleido does not find one)."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        raise UserError("figure export needs kaleido: pip install 'selfsup[export]'") from None
    import plotly.io as pio

    (out / "figures").mkdir(exist_ok=True)
    jobs = [(fig, out / "figures" / f"{name}.{fmt}") for name, fig in figures for fmt in formats]
    pio.write_images([f for f, _ in jobs], [p for _, p in jobs], width=900, height=500)  # one browser for all
