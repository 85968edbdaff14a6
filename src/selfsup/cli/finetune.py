"""`selfsup finetune`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from selfsup.cli.app import VERIFY_HELP, _optional_path, app
from selfsup.core.config import Finetune
from selfsup.core.defaults import (
    DEFAULT_BACKBONE,
    DEFAULT_BUDGETS,
    DEFAULT_COLOUR,
    DEFAULT_SEEDS,
    DEFAULT_WIDTH,
    as_csv,
)

F = Finetune()  # the default study's values


@app.command()
def finetune(
    task: str = typer.Option(
        "classification", help="classification or pose (single set); segmentation or depth (multi set)."
    ),
    data: Path = typer.Option(..., help="Dataset folder."),
    out: Path = typer.Option(..., help="Folder for results.csv (and per-cell results for resuming)."),
    init: Optional[Path] = typer.Option(
        None,
        help="Folder from `selfsup pretrain`, or a registered backbone as models:/NAME/VERSION "
        "(a `--method scratch` folder or none: from scratch).",
    ),
    budgets: str = typer.Option(as_csv(DEFAULT_BUDGETS), help="Label budgets (labelled images), comma-separated."),
    seeds: str = typer.Option(
        as_csv(DEFAULT_SEEDS), help="Seeds, comma-separated (each picks its own nested subsets)."
    ),
    protocol: str = typer.Option(
        "finetune",
        help="finetune (all weights) or frozen-1/2/3 (the stem and the first k main blocks frozen; "
        "frozen-3: only the head trains).",
    ),
    bn: Optional[str] = typer.Option(
        None,
        help="Batch norm: train or frozen (default: train for finetune, frozen for the frozen stages of frozen-k).",
    ),
    backbone: str = typer.Option(DEFAULT_BACKBONE, help="Backbone when training from scratch."),
    width: float = typer.Option(DEFAULT_WIDTH, help="Width multiplier when training from scratch."),
    colour: str = typer.Option(DEFAULT_COLOUR, help="Input colour space when training from scratch: rgb or lab."),
    steps: int = typer.Option(F.steps, help="Optimisation steps per cell, the same for every budget."),
    epochs: int = typer.Option(F.epochs, help="Validation points per cell (steps are split between them)."),
    batch_size: int = typer.Option(F.batch_size, help="Images per step."),
    lr: float = typer.Option(F.lr, help="Peak learning rate."),
    weight_decay: float = typer.Option(5e-4, help="AdamW weight decay."),
    schedule: str = typer.Option("cosine", help="Decay after the warm-up: cosine or linear."),
    augment: str = typer.Option(
        "paper", help="paper (flip, crop, colour jitter, Cutout: the paper's appendix) or flip-translate."
    ),
    params_file: Optional[Path] = typer.Option(
        None, help="best_params.json from `selfsup tune`: its lr, weight decay and schedule win."
    ),
    shard: Optional[str] = typer.Option(
        None,
        help="I/N: train only job I's share of the budget × seed cells (I counted from 0); "
        "results.csv is written by the job (or rerun) that finds every cell done.",
    ),
    verify: bool = typer.Option(False, "--verify", help=VERIFY_HELP),
    stack: Optional[int] = typer.Option(
        None,
        help="Cells trained together as one stacked model (default: 16 on a GPU, 1 on the CPU, where stacking "
        "is slower). Same results up to float rounding.",
    ),
    compile: bool = typer.Option(
        False, "--compile", help="torch.compile the training step (needs a C++ compiler on the CPU)."
    ),
    deterministic: bool = typer.Option(
        False,
        "--deterministic",
        help="torch's deterministic algorithms and cuDNN settings: bit-exact reruns on the same GPU, slower.",
    ),
) -> None:
    """Train a task at several label budgets and seeds, from scratch or from a pretrained backbone.

    Writes OUT/results.csv (method, task, protocol, label_budget, seed, metric, value, ...), metrics on the test split.

    Example: selfsup finetune --task classification --data data/single-CV --init models/rotation --out results/rotation
    """
    import dataclasses

    from selfsup.core.checks import parse_int_list
    from selfsup.data.shards import parse_shard
    from selfsup.evaluate.finetune import FinetuneConfig
    from selfsup.evaluate.finetune import finetune as run

    cfg = FinetuneConfig(
        steps=steps,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        schedule=schedule,
        augment=augment,
        compile=compile,
        deterministic=deterministic,
    )
    if params_file is not None:
        from selfsup.evaluate.tuned import read_best

        cfg = dataclasses.replace(cfg, **read_best(params_file))
    init = _optional_path(init)
    res = run(
        task,
        data,
        out,
        init,
        parse_int_list(budgets, "label budget"),
        parse_int_list(seeds, "seed"),
        protocol,
        backbone,
        width,
        cfg,
        colour=colour,
        bn=bn,
        shard=parse_shard(shard),
        verify=verify,
        stack=stack,
    )
    if res.attrs.get("missing"):
        typer.echo(
            f"shard {shard}: cells done into {out / 'cells'}; {res.attrs['missing']} cells of other jobs still "
            "missing, so no results.csv yet (the last job, or a rerun without --shard, writes it)"
        )
    else:
        typer.echo(f"wrote {len(res)} rows to {out / 'results.csv'}")
