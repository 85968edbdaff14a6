"""`selfsup verify`."""

from __future__ import annotations

from pathlib import Path

import typer

from selfsup.cli.app import app


@app.command()
def verify(
    data: Path = typer.Argument(..., help="Dataset folder."),
) -> None:
    """Check a dataset folder: its format (array dtypes and shapes, label columns, splits) and every
    file against the manifest's sha256 checksums. Exit status 0 only when all match.

    Example: selfsup verify data/single
    """
    from selfsup.data.dataset import load_dataset

    ds = load_dataset(data, verify=True)
    typer.echo(
        f"{data}: {len(ds.manifest['sha256'])} files match the manifest ({len(ds.labels)} images, "
        f"dataset hash {ds.dataset_hash})"
    )
