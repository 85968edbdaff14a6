"""`selfsup readout`."""

from __future__ import annotations

from pathlib import Path

import typer

from selfsup.cli.app import VERIFY_HELP, app


@app.command()
def readout(
    data: Path = typer.Option(..., help="Single-object dataset folder."),
    init: Path = typer.Option(
        ..., help="Folder from `selfsup pretrain` or models:/NAME/VERSION (a scratch folder: a random backbone)."
    ),
    out: Path = typer.Option(..., help="Folder for readout.csv."),
    verify: bool = typer.Option(False, "--verify", help=VERIFY_HELP),
) -> None:
    """Read each scene factor (class, pose bin and angles, light, colour hue, texture) out of a frozen
    backbone with linear probes: what the pretraining kept and what it threw away.

    Writes OUT/readout.csv: accuracy (against the majority class) or R² (against 0) per factor, on the test split.

    Example: selfsup readout --data data/single --init models/single/resnet9/rotation --out results/readout/rot
    """
    from selfsup.core.defaults import READOUT_FILE
    from selfsup.evaluate.readout import readout as run

    table = run(data, init, out, verify=verify)
    typer.echo(f"read out {int((table.status == 'ok').sum())} of {len(table)} factors → {out / READOUT_FILE}")
