"""`selfsup report`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from selfsup.cli.app import app
from selfsup.core.config import Report

REP = Report()  # the default study's values


@app.command()
def report(
    results: Optional[list[Path]] = typer.Option(
        None, help="results.csv files or folders holding them (repeat the option)."
    ),
    out: Path = typer.Option(
        ..., help="Report folder: index.html, utility.csv, curves.csv, metrics.json and the analysis tables."
    ),
    interpolation: str = typer.Option(
        REP.interpolation, help="Interpolate the scratch curve in log n (default) or linear n."
    ),
    bootstrap: int = typer.Option(
        REP.bootstrap, help="Draws of the studentised curve means behind each utility interval."
    ),
    mlflow_experiment: Optional[str] = typer.Option(
        None, help="Also read the finetune and probe cells of this MLflow experiment."
    ),
    export: str = typer.Option(
        "", help="Also write every figure to OUT/figures: png, svg or png,svg (needs kaleido and Chromium)."
    ),
    compute: Optional[Path] = typer.Option(
        None, help="Stage times from an earlier report's compute.csv (rebuilding a report whose MLflow runs are gone)."
    ),
) -> None:
    """Compute the utility of pretraining and the analysis tables; write the offline HTML report.

    Example: selfsup report --results results --out reports
    """
    from selfsup.report.page import make_report

    formats = tuple(f.strip() for f in export.split(",") if f.strip())
    make_report(results or [], out, interpolation, bootstrap, mlflow_experiment, formats, compute)
    typer.echo(f"report: {out / 'index.html'}")
