"""The typer app every command registers on, and the helpers commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    help="How many labels does self-supervised pretraining save? Render, pretrain, finetune or probe, report.",
)


def _optional_path(path: Optional[Path]) -> Optional[Path]:
    """MLproject passes ``--init=`` (an empty value) for "none"."""
    return path if path and str(path).strip() not in ("", ".") else None


VERIFY_HELP = "Check the dataset's files against the manifest's sha256 checksums first (reads every byte)."
