"""`selfsup pretrain`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from selfsup.cli.app import VERIFY_HELP, app
from selfsup.core.config import Pretrain
from selfsup.core.defaults import (
    DEFAULT_COLOUR,
    DEFAULT_WIDTH,
)

P = Pretrain()  # the default study's values


@app.command()
def pretrain(
    method: str = typer.Option(
        ...,
        help="amdim, barlow, byol, cmc, moco, rotation, simclr or vae; scratch writes only the backbone's description.",
    ),
    data: Path = typer.Option(..., help="Dataset folder (its train split is used, without labels)."),
    out: Path = typer.Option(..., help="Folder for backbone.safetensors, meta.json and checkpoint.pt."),
    backbone: Optional[str] = typer.Option(
        None,
        help="resnet9 or resnet50 (default resnet9); cmc trains its split version (resnet9_split, resnet50_split).",
    ),
    colour: str = typer.Option(DEFAULT_COLOUR, help="Network input colour space: rgb or lab (the paper used lab)."),
    width: float = typer.Option(DEFAULT_WIDTH, help="Width multiplier of the backbone (1.0 = 64-128-256-512)."),
    epochs: int = typer.Option(P.epochs, help="Passes over the train split."),
    batch_size: int = typer.Option(P.batch_size, help="Images per step."),
    lr: float = typer.Option(P.lr, help="Peak learning rate (AdamW, one epoch of warm-up, then the schedule)."),
    schedule: str = typer.Option(P.schedule, help="Decay after the warm-up: cosine or linear."),
    seed: int = typer.Option(P.seed, help="Seed for initialisation, batches and augmentation."),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Accepted for old scripts: a checkpoint of the same settings in OUT is always continued.",
    ),
    replace: bool = typer.Option(
        False, "--replace", help="Delete a backbone or checkpoint of other settings in OUT first."
    ),
    reuse: bool = typer.Option(
        False,
        "--reuse",
        help="Keep OUT's backbone only if the same settings and training code made it, else replace it "
        "(what dvc.yaml runs).",
    ),
    verify: bool = typer.Option(False, "--verify", help=VERIFY_HELP),
    compile: bool = typer.Option(
        False,
        "--compile",
        help="torch.compile the whole training step: networks, target networks, loss "
        "(needs a C++ compiler on the CPU).",
    ),
    deterministic: bool = typer.Option(
        False,
        "--deterministic",
        help="torch's deterministic algorithms and cuDNN settings: bit-exact reruns on the same GPU, slower.",
    ),
    online_probe: bool = typer.Option(
        False,
        "--online-probe",
        "--probe",
        help="Train an online linear probe on detached features alongside; log its val accuracy.",
    ),
    params_file: Optional[Path] = typer.Option(
        None,
        help="best_params.json from `selfsup tune --pretrain`: its lr, weight decay, schedule and method knobs win.",
    ),
) -> None:
    """Pretrain a backbone with a self-supervised method; saves it as safetensors.

    Data-parallel over several processes or GPUs: torchrun --nproc_per_node N -m selfsup pretrain ...
    A rerun on the same OUT resumes its checkpoint when the settings match; other settings need --replace.

    Example: selfsup pretrain --method rotation --data data/single-CV --out models/rotation --epochs 10
    """
    from selfsup.pretrain.run import PretrainConfig
    from selfsup.pretrain.run import pretrain as run

    tuned = {"lr": lr, "schedule": schedule}
    if params_file is not None:
        from selfsup.evaluate.tuned import read_pretrain_best

        tuned = read_pretrain_best(params_file)
    config = PretrainConfig(
        method,
        backbone or None,
        width,
        colour,
        epochs,
        batch_size,
        seed=seed,
        compile=compile,
        deterministic=deterministic,
        online_probe=online_probe,
        **tuned,
    )
    meta = run(config, data, out, replace=replace, verify=verify, reuse=reuse)
    if meta.get("already_done"):
        typer.echo(f"{out} already holds this {method} pretraining: nothing to do (--replace retrains it)")
    else:
        typer.echo(f"pretrained {method} in {meta['train_time_s']:.0f} s, final loss {meta['final_loss']:.4f} → {out}")
        if "model_uri" in meta:
            typer.echo(f"registered in MLflow as {meta['model_uri']} (--init {meta['model_uri']} loads it)")
