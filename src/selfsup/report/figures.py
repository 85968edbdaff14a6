"""The report's figures (plotly), and their export to PNG / SVG with kaleido."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from selfsup.analyse.power import POWER_VALUES
from selfsup.analyse.tables import (
    groups,
    series_label,
)
from selfsup.analyse.utility import (
    LOWER_BOUND,
    OK,
    PRETRAINED_CONTEXT,
    TOO_FEW_SEEDS,
    UNDEFINED,
    format_interval,
)
from selfsup.core.defaults import SCRATCH
from selfsup.core.errors import UserError

EXPORT_FORMATS = ("png", "svg")


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
