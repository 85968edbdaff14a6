"""`selfsup import`."""

from __future__ import annotations

from pathlib import Path

import typer

from selfsup.cli.app import app


def _warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


@app.command("import")
def import_(
    source: str = typer.Option(
        ..., "--from", help="imagefolder (one sub-folder per class) or csv (a manifest path,label[,group])."
    ),
    src: Path = typer.Argument(
        ..., metavar="SRC", help="The image folder, or the manifest CSV (paths relative to its folder)."
    ),
    out: Path = typer.Option(..., help="Dataset folder to write (the render's format)."),
    resolution: int = typer.Option(64, help="Image side in pixels after resizing (antialiased)."),
    fit: str = typer.Option("crop", help="crop (fill the square, centre-cropped) or pad (fit it, black borders)."),
    seed: int = typer.Option(0, help="Seed of the stratified train/val/test split (70/15/15 %)."),
    replace: bool = typer.Option(False, "--replace", help="Replace a dataset of other files or settings in OUT."),
) -> None:
    """Import a folder of real images (or a manifest CSV) as a dataset: every command downstream works on it.

    Greyscale, palette, alpha and 16-bit images are converted to RGB (counted in the manifest); splits are
    stratified by class and, with a group column, disjoint by group. Only classification labels exist.

    Example: selfsup import --from imagefolder photos/ --out data/photos --resolution 64
    """
    from selfsup.core.progress import step_bar
    from selfsup.data.imports import duplicates_warning, plan_import, write_import

    plan = plan_import(source, src, out, resolution, fit, seed, replace)  # every check before the bar
    if plan.duplicates:
        _warn(duplicates_warning(plan))
    if plan.done is not None:
        typer.echo(f"{out} already holds this import: nothing to do (--replace re-imports it)")
        return
    with step_bar(f"import {src}", transient=True) as bar:  # a bad file found half-way: one line
        manifest = write_import(plan, progress=bar)
    c = manifest["counts"]
    typer.echo(
        f"imported {c['images']} images of {len(manifest['classes'])} classes "
        f"(train {c['split_train']}, val {c['split_val']}, test {c['split_test']}) → {out}"
    )
