"""`selfsup study`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from selfsup.cli.app import app
from selfsup.core.errors import UserError


@app.command()
def study(
    yes: bool = typer.Option(False, "--yes", "-y", help="Start without asking, whatever the estimate."),
    estimate_only: bool = typer.Option(
        False, "--estimate-only", help="Print (and with --json write) the estimate; run nothing."
    ),
    confirm_above: float = typer.Option(1.0, help="Ask before starting when the estimate is above this many hours."),
    params: Path = typer.Option(
        Path("params.yaml"), help="The params file dvc reads, or a profile (profiles/NAME.yaml) to estimate."
    ),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the estimate as JSON here."),
    all_stages: bool = typer.Option(
        False, "--all", help="Estimate every stage, not only those dvc status reports as changed."
    ),
) -> None:
    """Estimate what `dvc repro` will cost on this machine, ask when it is large, then run it.

    Counts the images every stage renders or pushes through a network, times a few batches of each
    kind on this device (a few seconds to minutes) and prints hours per stage kind.

    Example: selfsup profile paper && selfsup study
    """
    import json
    import subprocess

    from rich.console import Console
    from rich.table import Table

    from selfsup.core.checks import numbers
    from selfsup.pipeline.estimate import measure, pending
    from selfsup.pipeline.plan import plan
    from selfsup.pipeline.profiles import load_params, load_profile

    numbers(confirm_above=confirm_above)
    if params.resolve() != Path("params.yaml").resolve() and not estimate_only:
        raise UserError(f"--params {str(params)!r} needs --estimate-only: dvc repro always reads params.yaml")
    is_params = params.resolve() == Path("params.yaml").resolve()
    jobs = plan(load_params(params) if is_params else load_profile(params))  # a profile: its differences
    if not all_stages and params.resolve() == Path("params.yaml").resolve():
        jobs, note = pending(jobs)
    else:
        note = f"all {len(jobs)} stages"
    if not estimate_only:  # a store that is down, or datasets beyond the disk, fail now, not in a stage
        from selfsup.core.checks import fits_on_disk
        from selfsup.core.tracking import check_store
        from selfsup.pipeline.plan import disk_needed

        check_store()
        renders = [j for j in jobs if j.kind == "render"]
        fits_on_disk("data", disk_needed(jobs), f"the study's {len(renders)} datasets still to render")
    console = Console(stderr=True)
    with console.status("measuring") as status:
        est = measure(jobs, progress=lambda what: status.update(f"measuring {what}"))
    table = Table(title=f"Estimate on {est.device}: {note}")
    for col in ("stage", "jobs", "images", "hours"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for row in est.by_kind():
        table.add_row(row["stage"], str(row["jobs"]), f"{row['images']:,.0f}", f"{row['hours']:,.2f}")
    table.add_row("total", str(len(jobs)), "", f"{est.hours:,.2f}")
    Console().print(table)
    if json_out is not None:
        json_out.write_text(json.dumps(est.to_json(), indent=2))
    if estimate_only or not jobs:
        typer.echo("nothing to run: every stage is up to date" if not jobs else "estimate only: nothing started")
        return
    if est.hours > confirm_above and not yes:
        if not sys.stdin.isatty():
            raise UserError(f"the estimate is {est.hours:,.1f} hours: rerun with --yes to start it without a terminal")
        if not typer.confirm(f"Start dvc repro (about {est.hours:,.1f} hours)?", default=False):
            raise typer.Exit(1)
    sys.exit(subprocess.call([sys.executable, "-m", "dvc", "repro"]))  # the dvc of this environment
