"""Writing the report: the tables of :mod:`selfsup.analyse.tables` as CSV, ``metrics.json`` for DVC, and an
offline HTML page of plotly figures, staged in a hidden folder and swapped in when complete.

Reads any ``results.csv`` in the long format (``method, task, protocol, label_budget, seed,
metric, value``), so a table from another tool can be reported too.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from selfsup.analyse import analysis
from selfsup.analyse.tables import (
    TABLES,
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
    format_interval,
)
from selfsup.core import checks, tracking
from selfsup.core.errors import UserError
from selfsup.core.provenance import atomic_write_json, atomic_write_text, staged_folder
from selfsup.evaluate.tasks import TASKS
from selfsup.report.figures import _analysis_figures, _export, _figures, _prediction_figures
from selfsup.report.load import (
    check_rows,
    headline_metric,
    load_compute,
    load_predictions,
    load_readouts,
    load_results,
)

EXPORT_FORMATS = ("png", "svg")


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
        check_rows(frames[0])
    tracking.check_store()
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
        check_rows(results)
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
    """Build every table (pure: :func:`selfsup.analyse.tables.report_tables`), then write the files and the page."""
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
