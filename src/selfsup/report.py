"""The report: utility tables, DVC metrics/plots files and an offline HTML page of plotly figures.

Reads any ``results.csv`` in the long format (``method, task, protocol, label_budget, seed,
metric, value``), so a table from another tool can be reported too.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from . import tracking
from .errors import UserError
from .provenance import atomic_write_json, atomic_write_text
from .tasks import TASKS
from .utility import INTERPOLATIONS, LOWER_BOUND, OK, utility_table

REQUIRED = ["method", "task", "protocol", "label_budget", "seed", "metric", "value"]


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
        df["source"] = str(f)
        frames.append(df)
    res = pd.concat(frames, ignore_index=True)
    res["label_budget"] = res["label_budget"].astype(int)
    res["value"] = res["value"].astype(float)
    return res


def headline_metric(task: str, results: pd.DataFrame) -> str:
    """The task's registered headline metric, else the first metric the table has for it."""
    if task in TASKS.names():
        return TASKS.create(task).metric
    return str(results.loc[results.task == task, "metric"].iloc[0])


def make_report(paths: list[str | Path], out: str | Path, interpolation: str = "log", n_boot: int = 1000) -> dict:
    """Write ``utility.csv``, ``curves.csv``, ``metrics.json`` and ``index.html`` to ``out``."""
    if interpolation not in INTERPOLATIONS:
        raise UserError(f"unknown interpolation {interpolation!r}: choose from {', '.join(INTERPOLATIONS)}")
    results = load_results(paths)
    with tracking.run("report", {"results": ",".join(map(str, paths)), "interpolation": interpolation,
                                 "n_boot": n_boot, "out": str(out)}, run_name="report"):
        metrics = _report(results, Path(out), interpolation, n_boot)
        for name in ("utility.csv", "curves.csv", "metrics.json", "index.html"):
            tracking.log_artifact(Path(out) / name)
    return metrics


def _report(results: pd.DataFrame, out: Path, interpolation: str, n_boot: int) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metric_of_task = {t: headline_metric(t, results) for t in sorted(results.task.unique())}
    util = utility_table(results, metric_of_task, interpolation, n_boot)
    atomic_write_text(out / "utility.csv", util.to_csv(index=False))

    sel = results[[metric_of_task[t] == m for t, m in zip(results.task, results.metric)]]
    curves = (sel.groupby(["method", "task", "protocol", "label_budget"])["value"]
              .agg(mean="mean", std="std", seeds="count").reset_index())
    atomic_write_text(out / "curves.csv", curves.to_csv(index=False))
    metrics = _headline(util, curves)
    atomic_write_json(out / "metrics.json", metrics)
    _write_html(out, results, curves, util, metric_of_task, interpolation, metrics)
    return metrics


def _headline(util: pd.DataFrame, curves: pd.DataFrame) -> dict:
    """Numbers for ``dvc metrics show``: per method and task, the mean utility over budgets where
    it is defined, and the best metric of each curve."""
    out: dict = {"utility": {}, "best_metric": {}}
    for (method, task, protocol), g in util.groupby(["method", "task", "protocol"]):
        ok = g[g.status == OK]
        out["utility"][f"{method}/{task}/{protocol}"] = {
            "mean_utility": round(float(ok.utility.mean()), 4) if len(ok) else None,
            "budgets_ok": int(len(ok)), "budgets_lower_bound": int((g.status == LOWER_BOUND).sum())}
    for (method, task, protocol), g in curves.groupby(["method", "task", "protocol"]):
        out["best_metric"][f"{method}/{task}/{protocol}"] = round(float(g["mean"].max()), 4)
    return out


def _figures(curves: pd.DataFrame, util: pd.DataFrame, metric_of_task: dict[str, str]) -> list[tuple[str, object]]:
    import plotly.graph_objects as go

    figs = []
    for task, metric in metric_of_task.items():
        fig = go.Figure()
        for (method, protocol), g in curves[curves.task == task].groupby(["method", "protocol"]):
            name = method if protocol == "finetune" else f"{method} ({protocol})"
            fig.add_trace(go.Scatter(x=g.label_budget, y=g["mean"], name=name, mode="lines+markers",
                                     error_y=dict(type="data", array=g["std"].fillna(0), visible=True)))
        fig.update_layout(title=f"{task}: test {metric} vs labels (mean ± s.d. over seeds)",
                          xaxis=dict(type="log", title="labelled training images"), yaxis_title=metric,
                          template="plotly_white")
        figs.append((f"{task}-metric", fig))
        u = util[util.task == task]
        if u.empty:
            continue
        fig = go.Figure()
        for (method, protocol), g in u.groupby(["method", "protocol"]):
            name = method if protocol == "finetune" else f"{method} ({protocol})"
            ok, lb = g[g.status == OK], g[g.status == LOWER_BOUND]
            fig.add_trace(go.Scatter(x=ok.label_budget, y=ok.utility, name=name, mode="lines+markers",
                                     error_y=dict(type="data", symmetric=False, array=(ok.ci_high - ok.utility).fillna(0),
                                                  arrayminus=(ok.utility - ok.ci_low).fillna(0), visible=True)))
            if len(lb):
                fig.add_trace(go.Scatter(x=lb.label_budget, y=lb.utility, name=f"{name}: lower bound",
                                         mode="markers", marker=dict(color="lightgrey", symbol="triangle-up", size=12,
                                                                     line=dict(color="grey", width=1))))
        fig.add_hline(y=0, line_dash="dot", line_color="grey")
        fig.update_layout(title=f"{task}: utility U(n) = n̂/n − 1 (grey ▲: pretrained beats every scratch run; a lower bound)",
                          xaxis=dict(type="log", title="labelled training images"), yaxis_title="utility",
                          template="plotly_white")
        figs.append((f"{task}-utility", fig))
    return figs


def _write_html(out: Path, results, curves, util, metric_of_task, interpolation: str, metrics: dict) -> None:
    import plotly.offline

    (out / "plotly.min.js").write_text(plotly.offline.get_plotlyjs())  # once, beside the page: opens offline
    parts = [fig.to_html(full_html=False, include_plotlyjs=False, div_id=name, config={"displaylogo": False})
             for name, fig in _figures(curves, util, metric_of_task)]
    methods = sorted(results.method.unique())
    seeds = sorted(results.seed.unique())
    budgets = sorted(results.label_budget.unique())
    rows = []
    for key, v in metrics["utility"].items():
        mu = "n/a" if v["mean_utility"] is None else f"{v['mean_utility']:+.2f}"
        rows.append(f"<tr><td>{html.escape(key)}</td><td>{mu}</td><td>{v['budgets_ok']}</td>"
                    f"<td>{v['budgets_lower_bound']}</td></tr>")
    datasets = sorted(set(results.get("dataset_hash", pd.Series(dtype=str)).dropna().astype(str)))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>selfsup report</title>
<script src="plotly.min.js"></script>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}</style></head><body>
<h1>How many labels does self-supervised pretraining save?</h1>
<p>Methods: {html.escape(', '.join(methods))}. Tasks: {html.escape(', '.join(metric_of_task))}.
Label budgets: {', '.join(map(str, budgets))}. Seeds: {', '.join(map(str, seeds))}.
Dataset hashes: {html.escape(', '.join(datasets) or 'not recorded')}. Results from
{len(results.source.unique())} file(s), {len(results)} rows.</p>
<p>Utility U(n) = n̂/n − 1, where n̂ is the number of labels training from scratch needs to match the pretrained
model trained on n labels; n̂ is read off the scratch curve (made monotone) by interpolation in
{'log n' if interpolation == 'log' else 'linear n'}. U = 0: pretraining saves nothing; U = 4: scratch needs 5× the labels.
Intervals are 95 % bootstrap intervals over seeds. Where the pretrained model beats every scratch run, U is only a
lower bound (grey).</p>
<h2>Headline</h2>
<table><tr><th>method / task / protocol</th><th>mean utility where defined</th><th>budgets with U</th>
<th>budgets with a lower bound</th></tr>{''.join(rows)}</table>
<h2>Figures</h2>
{''.join(f'<div class="figure">{p}</div>' for p in parts)}
</body></html>
"""
    atomic_write_text(out / "index.html", page)

