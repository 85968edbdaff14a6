"""Names and defaults that several stages share, in one place (plain values: no torch, no I/O)."""

from __future__ import annotations

SCRATCH = "scratch"  # not a method: the name of random initialisation, the baseline of every utility

DEFAULT_BACKBONE = "resnet9"
DEFAULT_WIDTH = 0.25  # × 64-128-256-512 channels
DEFAULT_COLOUR = "rgb"

DEFAULT_BUDGETS = (100, 250, 500, 1000)  # label budgets of `selfsup finetune` / `probe` (and MLproject)
DEFAULT_SEEDS = (0, 1, 2)  # the fewest that give an interval (utility.MIN_SEEDS)

# files the stages leave for the report beside results.csv
READOUT_FILE = "readout.csv"  # `selfsup readout`: one row per scene factor
PREDICTIONS = "predictions"  # finetune: OUT/predictions/n{budget}-s{seed}.npz for the report's gallery


def as_csv(values) -> str:
    """(100, 250) → "100,250": how lists of numbers are written on command lines and in params."""
    return ",".join(map(str, values))
