"""`selfsup tune`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from selfsup.cli.app import _optional_path, app
from selfsup.core.config import Finetune
from selfsup.core.defaults import (
    DEFAULT_COLOUR,
    DEFAULT_WIDTH,
)

F = Finetune()  # the default study's values


@app.command()
def tune(
    task: str = typer.Option("classification", help="The task to tune finetuning for."),
    data: Path = typer.Option(..., help="Dataset folder."),
    out: Path = typer.Option(..., help="Folder for best_params.json (and optuna.db with the default storage)."),
    init: Optional[Path] = typer.Option(
        None, help="Folder from `selfsup pretrain` or models:/NAME/VERSION; omit (or a scratch folder) for scratch."
    ),
    budget: int = typer.Option(F.tune_budget, help="The label budget of this tier: trials train on that many labels."),
    trials: int = typer.Option(
        20, help="Trials of the whole study, however many workers share it (0: write the given values)."
    ),
    seed: int = typer.Option(0, help="Seed of the label subset, the training and the TPE sampler."),
    storage: Optional[str] = typer.Option(
        None, help="Optuna storage: a database URL or a journal file (*.log); default OUT/optuna.db."
    ),
    study_name: Optional[str] = typer.Option(
        None, help="Optuna study name (default METHOD-TASK-PROTOCOL-nBUDGET); workers with the same name share it."
    ),
    protocol: str = typer.Option("finetune", help="finetune or frozen-1/2/3."),
    steps: int = typer.Option(F.steps, help="Optimisation steps per trial."),
    epochs: int = typer.Option(F.epochs, help="Validation points per trial (the pruner sees each)."),
    batch_size: int = typer.Option(F.batch_size, help="Images per step."),
    lr: float = typer.Option(F.lr, help="Learning rate written when --trials 0."),
    weight_decay: float = typer.Option(5e-4, help="Weight decay written when --trials 0."),
    schedule: str = typer.Option("cosine", help="Schedule written when --trials 0."),
    augment: str = typer.Option("paper", help="Finetuning augmentation: paper or flip-translate."),
    pretrain: Optional[str] = typer.Option(
        None,
        "--pretrain",
        help="Tune pretraining of this method instead: lr, weight decay, schedule and the "
        "method's knobs, scored by an online linear probe's val accuracy per epoch "
        "(--epochs and --batch-size are then pretraining's; --init, --budget, --task unused).",
    ),
    backbone: Optional[str] = typer.Option(None, help="With --pretrain: resnet9 (default) or resnet50."),
    width: float = typer.Option(DEFAULT_WIDTH, help="With --pretrain: the backbone's width multiplier."),
    colour: str = typer.Option(DEFAULT_COLOUR, help="With --pretrain: rgb or lab input."),
) -> None:
    """Tune finetuning's learning rate, weight decay and schedule with Optuna (TPE, median pruning),
    or with --pretrain METHOD a pretraining's (plus the method's own knobs, e.g. SimCLR's temperature).

    Start the same command in several shells (or machines, with a shared --storage) to add workers.

    Example: selfsup tune --data data/single --init models/rotation --budget 100 --trials 20 --out tuned/rot
    """
    from selfsup.core.checks import numbers
    from selfsup.evaluate.finetune import FinetuneConfig
    from selfsup.evaluate.tune import tune as run

    numbers(width=width)  # (used with --pretrain only, but never a value out of range)

    if pretrain is not None:
        from selfsup.evaluate.tune import tune_pretrain
        from selfsup.pretrain.run import PretrainConfig

        base = PretrainConfig(
            pretrain, backbone or None, width, colour, epochs, batch_size, lr, weight_decay, schedule, seed
        )
        best = tune_pretrain(base, data, out, trials, storage or None, study_name)
    else:
        cfg = FinetuneConfig(
            steps=steps,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            schedule=schedule,
            augment=augment,
        )
        best = run(
            task, data, out, _optional_path(init), budget, trials, seed, storage or None, study_name, protocol, cfg
        )

    value = "—" if best["best_value"] is None else f"{best['best_value']:.4f}"
    typer.echo(f"best {best['metric'] or 'params'} {value}: {best['params']} → {out / 'best_params.json'}")
    if best["trial_states"].get("diverged"):
        typer.echo(f"{best['trial_states']['diverged']} of {best['trials']} trials diverged (pruned, never best)")
