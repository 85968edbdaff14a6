"""Names and defaults that several stages share, in one place (plain values: no torch, no I/O)."""

from __future__ import annotations

from selfsup.core.config import SCRATCH, Finetune, Pretrain, Study

# the default study's values (the config schema): the CLI's, the API's and MLproject's defaults
DEFAULT_BACKBONE = Study().backbones[0]
DEFAULT_WIDTH = Pretrain().width  # × 64-128-256-512 channels
DEFAULT_COLOUR = Pretrain().colour
DEFAULT_BUDGETS = Finetune().budgets  # label budgets of `selfsup finetune` / `probe`
DEFAULT_SEEDS = Finetune().seeds

__all__ = ["SCRATCH", "DEFAULT_BACKBONE", "DEFAULT_WIDTH", "DEFAULT_COLOUR", "DEFAULT_BUDGETS", "DEFAULT_SEEDS"]

# files the stages leave for the report beside results.csv
READOUT_FILE = "readout.csv"  # `selfsup readout`: one row per scene factor
PREDICTIONS = "predictions"  # finetune: OUT/predictions/n{budget}-s{seed}.npz for the report's gallery


def as_csv(values) -> str:
    """(100, 250) → "100,250": how lists of numbers are written on command lines and in params."""
    return ",".join(map(str, values))
