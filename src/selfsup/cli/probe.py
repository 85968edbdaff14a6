"""`selfsup probe`."""

from __future__ import annotations

from pathlib import Path

import typer

from selfsup.cli.app import VERIFY_HELP, app
from selfsup.core.config import Probe
from selfsup.core.defaults import (
    DEFAULT_BUDGETS,
    DEFAULT_SEEDS,
    as_csv,
)

PR = Probe()  # the default study's values


@app.command()
def probe(
    task: str = typer.Option(
        "classification", help="classification or pose (single set); segmentation or depth (multi set, linear only)."
    ),
    data: Path = typer.Option(..., help="Dataset folder."),
    out: Path = typer.Option(..., help="Folder for results.csv (and per-cell results for resuming)."),
    init: Path = typer.Option(
        ..., help="Folder from `selfsup pretrain` with the frozen backbone, or models:/NAME/VERSION."
    ),
    protocol: str = typer.Option("linear", help="linear (logistic / ridge regression on frozen features) or knn."),
    budgets: str = typer.Option(as_csv(DEFAULT_BUDGETS), help="Label budgets (labelled images), comma-separated."),
    seeds: str = typer.Option(
        as_csv(DEFAULT_SEEDS), help="Seeds, comma-separated (each picks its own nested subsets)."
    ),
    knn_metric: str = typer.Option(PR.knn_metric, help="kNN distance: cosine or euclidean."),
    k: int = typer.Option(PR.k, help="Neighbours of the kNN probe (votes weighted by 1/distance)."),
    all_labels: bool = typer.Option(
        False, "--all-labels", help="Also probe on every labelled training image (the paper's Table 1)."
    ),
    verify: bool = typer.Option(False, "--verify", help=VERIFY_HELP),
) -> None:
    """Probe a frozen pretrained backbone (linear or kNN) at several label budgets and seeds.

    Writes OUT/results.csv in the same format as finetune (protocol linear, knn-cosine or knn-euclidean).

    Example: selfsup probe --protocol knn --data data/single --init models/rotation --out results/rot-knn
    """
    from selfsup.core.checks import parse_int_list
    from selfsup.evaluate.probe import probe as run

    res = run(
        task,
        data,
        out,
        init,
        parse_int_list(budgets, "label budget"),
        parse_int_list(seeds, "seed"),
        protocol,
        knn_metric,
        k,
        verify=verify,
        all_labels=all_labels,
    )
    typer.echo(f"wrote {len(res)} rows to {out / 'results.csv'}")
