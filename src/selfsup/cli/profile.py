"""`selfsup profile`."""

from __future__ import annotations

from typing import Optional

import typer

from selfsup.cli.app import app
from selfsup.core.errors import UserError


@app.command()
def profile(
    name: Optional[str] = typer.Argument(
        None, help="Profile to switch to (a file profiles/NAME.yaml); omit to list them."
    ),
    force: bool = typer.Option(
        False, "--force", help="Overwrite a params.yaml with edits in no profile (kept as params.yaml.bak)."
    ),
) -> None:
    """Switch params.yaml (what `dvc repro` runs) to a profile: default (a 2-core CPU, ~40 min) or paper (many GPUs).

    Run in the project folder. Then `selfsup study` estimates the cost and runs the pipeline.

    Example: selfsup profile paper
    """
    from selfsup.pipeline.profiles import current_profile, profiles, use_profile

    if name is None:
        found, now = profiles(), current_profile()
        if not found:
            raise UserError("no profiles/ folder here: run this in the project folder")
        for p in found:
            typer.echo(f"{'*' if p == now else ' '} {p}")
        if now is None:
            typer.echo("  (params.yaml matches no profile: it has edits)")
        return
    backup = use_profile(name, force=force)
    typer.echo(
        f"params.yaml ← profiles/{name}.yaml"
        + (f" (your edits: {backup})" if backup else "")
        + "; next: selfsup study (cost estimate, then dvc repro)"
    )
