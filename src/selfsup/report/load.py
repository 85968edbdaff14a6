"""Reading what the stages wrote: results.csv files (checked), factor read-outs, prediction samples and an
earlier report's compute table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from selfsup.analyse.tables import (
    COST_COLUMNS,
    REQUIRED,
    check_results,
    stage_times,
    where,
)
from selfsup.core.defaults import PREDICTIONS, READOUT_FILE
from selfsup.core.errors import UserError
from selfsup.evaluate.tasks import TASKS

EXPORT_FORMATS = ("png", "svg")


def load_results(paths: list[str | Path]) -> pd.DataFrame:
    """Concatenate ``results.csv`` files; a folder means every ``results.csv`` below it."""
    if not paths:
        raise UserError("give at least one results file or folder")
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.rglob("results.csv"))
            if not found:
                raise UserError(f"no results.csv under folder {str(p)!r}")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"results path {str(p)!r} does not exist")
    frames = []
    for f in files:
        try:
            df = pd.read_csv(f)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read results file {str(f)!r}: {str(e).splitlines()[0]}") from None
        missing = [c for c in REQUIRED if c not in df.columns]
        if missing:
            raise UserError(f"results file {str(f)!r} lacks column(s) {', '.join(missing)}")
        for col in ("label_budget", "value"):
            bad = pd.to_numeric(df[col], errors="coerce").isna() & df[col].notna()
            if bad.any():
                raise UserError(f"results file {str(f)!r}: non-numeric {col} {df[col][bad].iloc[0]!r}")
        if df.empty:
            raise UserError(f"results file {str(f)!r} has no rows")
        df["source"] = str(f)
        df["source_line"] = range(2, len(df) + 2)  # the line in the file (after the header)
        frames.append(df)
    res = pd.concat(frames, ignore_index=True)
    for col in ("label_budget", "seed"):  # whole numbers as integers; anything else stays for the check to name
        numbers = pd.to_numeric(res[col], errors="coerce")
        if numbers.notna().all() and (numbers % 1 == 0).all() and numbers.abs().max() < 2**63:
            res[col] = numbers.astype("int64")
    res["value"] = res["value"].astype(float)
    return res


def check_rows(results: pd.DataFrame) -> None:
    """Every check of a results table: :func:`selfsup.analyse.tables.check_results`, then :func:`check_metrics`."""
    check_results(results)
    check_metrics(results)


def check_metrics(results: pd.DataFrame) -> None:
    """Refuse rows no run could have written: a task that does not exist, a metric that is not one of its
    task's, or a value outside that metric's range. The ranges are the tasks' own (``Task.ranges``, beside
    each task's metric function), so there is no second list to keep in step."""
    for (task, metric), rows in results.groupby(["task", "metric"], sort=False):
        if task not in TASKS.names():
            raise UserError(f"unknown task {task!r} at {where(rows.iloc[0])}: choose from {', '.join(TASKS.names())}")
        ranges = TASKS.create(task).ranges
        if metric not in ranges:
            raise UserError(
                f"unknown metric {metric!r} of task {task!r} at {where(rows.iloc[0])}: "
                f"its metrics are {', '.join(ranges)}"
            )
        low, high = ranges[metric]
        outside = (rows["value"] < low) | (rows["value"] > high)
        if outside.any():
            r = rows[outside].iloc[0]
            span = f"in [{low:g}, {high:g}]" if np.isfinite(high) else f"at least {low:g}"
            raise UserError(
                f"impossible {metric} {float(r['value'])} at {where(r)}: {task} {metric} is {span} "
                f"({int(outside.sum())} such row(s))"
            )


def load_readouts(paths: list[str | Path]) -> pd.DataFrame:
    """Every ``readout.csv`` (``selfsup readout``) below the results folders given; empty if none."""
    files = sorted(f for p in map(Path, paths or []) if p.is_dir() for f in p.rglob(READOUT_FILE))
    frames = []
    for f in files:
        try:
            frames.append(pd.read_csv(f).assign(source=str(f)))
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read read-out file {str(f)!r}: {str(e).splitlines()[0]}") from None
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_predictions(paths: list[str | Path]) -> list[dict]:
    """The prediction records (``OUT/predictions/*.npz`` of finetune folders) beside the results
    files given or below the folders given."""

    found = set()
    for p in map(Path, paths or []):
        if p.is_dir():
            found |= set(p.rglob(f"{PREDICTIONS}/*.npz"))
        elif p.is_file():
            found |= set((p.parent / PREDICTIONS).glob("*.npz"))
    records = []
    for f in sorted(found):
        try:
            with np.load(f) as z:
                records.append({k: (z[k].item() if z[k].ndim == 0 else z[k]) for k in z.files})
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read prediction file {str(f)!r}: {e}") from None
    return records


def headline_metric(task: str, results: pd.DataFrame) -> str:
    """The task's registered headline metric, else the first metric the table has for it."""
    if task in TASKS.names():
        return TASKS.create(task).metric
    return str(results.loc[results.task == task, "metric"].iloc[0])


def load_compute(path: str | Path) -> pd.DataFrame:
    """The stage times of an earlier report (its ``compute.csv``), checked for the columns it needs."""
    cols = [c for c in stage_times(pd.DataFrame()).columns if c not in COST_COLUMNS]  # older tables lack the cost
    p = Path(path)
    if not p.is_file():
        raise UserError(f"compute table {str(p)!r} does not exist (give an earlier report's compute.csv)")
    try:
        df = pd.read_csv(p, dtype={"dataset_hash": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"compute table {str(p)!r} is not a readable CSV: {str(e).splitlines()[0]}") from None
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise UserError(f"compute table {str(p)!r} lacks the column(s) {', '.join(missing)}")
    return df.reindex(columns=[*cols, *(c for c in COST_COLUMNS if c in df.columns)])
