"""The ``selfsup`` command line: thin shells over the library API (render, pretrain, finetune, probe, report).

Bad input prints one line (``error: ...``) and exits with status 2; nothing already written is touched.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .defaults import DEFAULT_BACKBONE, DEFAULT_BUDGETS, DEFAULT_COLOUR, DEFAULT_SEEDS, DEFAULT_WIDTH, as_csv
from .errors import UserError

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


@app.command()
def render(
    set: str = typer.Option(
        "single", "--set", help="single (64×64, one centred object) or multi (128×128, 4 objects, dense labels)."
    ),
    variant: str = typer.Option("----", help="Factors T C V L, '-' for the easy version, e.g. '-CV-'."),
    count: int = typer.Option(1000, help="Number of images (train/val/test ≈ 70/15/15 %)."),
    seed: int = typer.Option(0, help="Scene sampling seed: same seed, same scenes."),
    out: Path = typer.Option(..., help="Dataset folder to write."),
    workers: int = typer.Option(1, help="Render processes (each with its own Blender)."),
    resolution: Optional[int] = typer.Option(None, help="Image side in pixels (default: 64 single, 128 multi)."),
    samples: int = typer.Option(16, help="Cycles samples per pixel."),
    denoise: str = typer.Option(
        "none", help="none, or OpenImageDenoise with its fast or accurate prefilter (albedo and normal guides)."
    ),
    device: str = typer.Option("cpu", help="cpu, or gpu: Cycles on every GPU Blender finds (OptiX, CUDA, ...)."),
    replace: bool = typer.Option(False, "--replace", help="Replace a dataset with other parameters in OUT."),
    shapenet: Optional[Path] = typer.Option(
        None, help="ShapeNetCore v2 folder: its meshes replace the procedural ones."
    ),
    textures: Optional[Path] = typer.Option(None, help="Image folder (e.g. DTD's images/) for textures when T is on."),
    shard: Optional[str] = typer.Option(
        None,
        help="I/N: render only job I's part of the shard files (I counted from 0) "
        "and do not assemble; then run once without --shard to assemble.",
    ),
) -> None:
    """Render a synthetic dataset with Blender (Cycles, CPU) into a dataset folder.

    Resumable: rerun the same command after an interruption and only missing shards are rendered.
    As N independent jobs (a Slurm array, a Kubernetes indexed Job; docs/scaling.md): --shard I/N each.

    Example: selfsup render --set single --variant=-CV- --count 2000 --seed 0 --out data/single-CV
    """
    from .render import render_dataset
    from .shards import parse_shard

    m = render_dataset(
        out,
        set,
        variant,
        count,
        seed,
        workers,
        resolution,
        samples,
        replace=replace,
        shapenet=shapenet,
        textures=textures,
        shard=parse_shard(shard),
        denoise=denoise,
        device=device,
    )
    if "shard" in m:
        typer.echo(
            f"shard {m['shard']}: rendered {m['rendered']} images into {out / '.shards'}; "
            f"{m['missing']} shard files still missing"
            + ("" if m["missing"] else " (none: run without --shard to assemble)")
        )
    else:
        typer.echo(f"rendered {m['counts']['images']} images to {out} (dataset hash {m['dataset_hash']})")


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
    epochs: int = typer.Option(10, help="Passes over the train split."),
    batch_size: int = typer.Option(128, help="Images per step."),
    lr: float = typer.Option(2e-3, help="Peak learning rate (AdamW, one epoch of warm-up, then the schedule)."),
    schedule: str = typer.Option("cosine", help="Decay after the warm-up: cosine or linear."),
    seed: int = typer.Option(0, help="Seed for initialisation, batches and augmentation."),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Accepted for old scripts: a checkpoint of the same settings in OUT is always continued.",
    ),
    replace: bool = typer.Option(
        False, "--replace", help="Delete a backbone or checkpoint of other settings in OUT first."
    ),
    verify: bool = typer.Option(False, "--verify", help=VERIFY_HELP),
    compile: bool = typer.Option(
        False, "--compile", help="torch.compile the backbone (needs a C++ compiler on the CPU)."
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
    from .pretrain import PretrainConfig
    from .pretrain import pretrain as run

    tuned = {"lr": lr, "schedule": schedule}
    if params_file is not None:
        from .tuned import read_pretrain_best

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
        online_probe=online_probe,
        **tuned,
    )
    meta = run(config, data, out, replace=replace, verify=verify)
    if meta.get("already_done"):
        typer.echo(f"{out} already holds this {method} pretraining: nothing to do (--replace retrains it)")
    else:
        typer.echo(f"pretrained {method} in {meta['train_time_s']:.0f} s, final loss {meta['final_loss']:.4f} → {out}")
        if "model_uri" in meta:
            typer.echo(f"registered in MLflow as {meta['model_uri']} (--init {meta['model_uri']} loads it)")


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
    steps: int = typer.Option(300, help="Optimisation steps per cell, the same for every budget."),
    epochs: int = typer.Option(3, help="Validation points per cell (steps are split between them)."),
    batch_size: int = typer.Option(64, help="Images per step."),
    lr: float = typer.Option(2e-3, help="Peak learning rate."),
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
) -> None:
    """Train a task at several label budgets and seeds, from scratch or from a pretrained backbone.

    Writes OUT/results.csv (method, task, protocol, label_budget, seed, metric, value, ...), metrics on the test split.

    Example: selfsup finetune --task classification --data data/single-CV --init models/rotation --out results/rotation
    """
    import dataclasses

    from .checks import parse_int_list
    from .finetune import FinetuneConfig
    from .finetune import finetune as run
    from .shards import parse_shard

    cfg = FinetuneConfig(
        steps=steps,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        schedule=schedule,
        augment=augment,
    )
    if params_file is not None:
        from .tuned import read_best

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


@app.command()
def probe(
    task: str = typer.Option(
        "classification", help="classification or pose (single set); segmentation or depth (multi set, linear only)."
    ),
    data: Path = typer.Option(..., help="Dataset folder."),
    out: Path = typer.Option(..., help="Folder for results.csv (and per-cell results for resuming)."),
    init: Path = typer.Option(
        ..., help="Folder from `selfsup pretrain` with the frozen backbone, or models:/NAME/VERSION."
    ),
    protocol: str = typer.Option("linear", help="linear (logistic / ridge regression on frozen features) or knn."),
    budgets: str = typer.Option(as_csv(DEFAULT_BUDGETS), help="Label budgets (labelled images), comma-separated."),
    seeds: str = typer.Option(
        as_csv(DEFAULT_SEEDS), help="Seeds, comma-separated (each picks its own nested subsets)."
    ),
    knn_metric: str = typer.Option("cosine", help="kNN distance: cosine or euclidean."),
    k: int = typer.Option(20, help="Neighbours of the kNN probe (votes weighted by 1/distance)."),
    all_labels: bool = typer.Option(
        False, "--all-labels", help="Also probe on every labelled training image (the paper's Table 1)."
    ),
    verify: bool = typer.Option(False, "--verify", help=VERIFY_HELP),
) -> None:
    """Probe a frozen pretrained backbone (linear or kNN) at several label budgets and seeds.

    Writes OUT/results.csv in the same format as finetune (protocol linear, knn-cosine or knn-euclidean).

    Example: selfsup probe --protocol knn --data data/single --init models/rotation --out results/rot-knn
    """
    from .checks import parse_int_list
    from .probe import probe as run

    res = run(
        task,
        data,
        out,
        init,
        parse_int_list(budgets, "label budget"),
        parse_int_list(seeds, "seed"),
        protocol,
        knn_metric,
        k,
        verify=verify,
        all_labels=all_labels,
    )
    typer.echo(f"wrote {len(res)} rows to {out / 'results.csv'}")


@app.command()
def readout(
    data: Path = typer.Option(..., help="Single-object dataset folder."),
    init: Path = typer.Option(
        ..., help="Folder from `selfsup pretrain` or models:/NAME/VERSION (a scratch folder: a random backbone)."
    ),
    out: Path = typer.Option(..., help="Folder for readout.csv."),
    verify: bool = typer.Option(False, "--verify", help=VERIFY_HELP),
) -> None:
    """Read each scene factor (class, pose bin and angles, light, colour hue, texture) out of a frozen
    backbone with linear probes: what the pretraining kept and what it threw away.

    Writes OUT/readout.csv: accuracy (against the majority class) or R² (against 0) per factor, on the test split.

    Example: selfsup readout --data data/single --init models/single/resnet9/rotation --out results/readout/rot
    """
    from .defaults import READOUT_FILE
    from .readout import readout as run

    table = run(data, init, out, verify=verify)
    typer.echo(f"read out {int((table.status == 'ok').sum())} of {len(table)} factors → {out / READOUT_FILE}")


@app.command()
def verify(
    data: Path = typer.Argument(..., help="Dataset folder."),
) -> None:
    """Check a dataset folder: its format (array dtypes and shapes, label columns, splits) and every
    file against the manifest's sha256 checksums. Exit status 0 only when all match.

    Example: selfsup verify data/single
    """
    from .dataset import load_dataset

    ds = load_dataset(data, verify=True)
    typer.echo(
        f"{data}: {len(ds.manifest['sha256'])} files match the manifest ({len(ds.labels)} images, "
        f"dataset hash {ds.dataset_hash})"
    )


@app.command()
def tune(
    task: str = typer.Option("classification", help="The task to tune finetuning for."),
    data: Path = typer.Option(..., help="Dataset folder."),
    out: Path = typer.Option(..., help="Folder for best_params.json (and optuna.db with the default storage)."),
    init: Optional[Path] = typer.Option(
        None, help="Folder from `selfsup pretrain` or models:/NAME/VERSION; omit (or a scratch folder) for scratch."
    ),
    budget: int = typer.Option(100, help="The label budget of this tier: trials train on that many labels."),
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
    steps: int = typer.Option(200, help="Optimisation steps per trial."),
    epochs: int = typer.Option(2, help="Validation points per trial (the pruner sees each)."),
    batch_size: int = typer.Option(32, help="Images per step."),
    lr: float = typer.Option(2e-3, help="Learning rate written when --trials 0."),
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
    from .finetune import FinetuneConfig
    from .tune import tune as run

    if pretrain is not None:
        from .pretrain import PretrainConfig
        from .tune import tune_pretrain

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


@app.command()
def report(
    results: Optional[list[Path]] = typer.Option(
        None, help="results.csv files or folders holding them (repeat the option)."
    ),
    out: Path = typer.Option(
        ..., help="Report folder: index.html, utility.csv, curves.csv, metrics.json and the analysis tables."
    ),
    interpolation: str = typer.Option("log", help="Interpolate the scratch curve in log n (default) or linear n."),
    bootstrap: int = typer.Option(1000, help="Draws of the studentised curve means behind each utility interval."),
    mlflow_experiment: Optional[str] = typer.Option(
        None, help="Also read the finetune and probe cells of this MLflow experiment."
    ),
    export: str = typer.Option(
        "", help="Also write every figure to OUT/figures: png, svg or png,svg (needs kaleido and Chromium)."
    ),
    compute: Optional[Path] = typer.Option(
        None, help="Stage times from an earlier report's compute.csv (rebuilding a report whose MLflow runs are gone)."
    ),
) -> None:
    """Compute the utility of pretraining and the analysis tables; write the offline HTML report.

    Example: selfsup report --results results --out reports
    """
    from .report import make_report

    formats = tuple(f.strip() for f in export.split(",") if f.strip())
    make_report(results or [], out, interpolation, bootstrap, mlflow_experiment, formats, compute)
    typer.echo(f"report: {out / 'index.html'}")


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
    from .study import current_profile, profiles, use_profile

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


@app.command()
def study(
    yes: bool = typer.Option(False, "--yes", "-y", help="Start without asking, whatever the estimate."),
    estimate_only: bool = typer.Option(
        False, "--estimate-only", help="Print (and with --json write) the estimate; run nothing."
    ),
    confirm_above: float = typer.Option(1.0, help="Ask before starting when the estimate is above this many hours."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file dvc reads."),
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

    from .checks import numbers
    from .study import load_params, measure, pending, plan

    numbers(confirm_above=confirm_above)
    if params.resolve() != Path("params.yaml").resolve() and not estimate_only:
        raise UserError(f"--params {str(params)!r} needs --estimate-only: dvc repro always reads params.yaml")
    jobs = plan(load_params(params))
    if not all_stages and params.resolve() == Path("params.yaml").resolve():
        jobs, note = pending(jobs)
    else:
        note = f"all {len(jobs)} stages"
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


def _usage_message(e, argv: list[str]) -> str:
    """Typer's message on one line, with the offending value when an option got a bad one."""
    msg = " ".join(e.format_message().split())
    param = getattr(e, "param", None)
    for opt in getattr(param, "opts", []) or []:
        for i, arg in reversed(list(enumerate(argv))):  # a repeated option: the last one counts
            if arg == opt and i + 1 < len(argv):
                return f"{msg} (got {argv[i + 1]!r})"
            if arg.startswith(opt + "="):
                return f"{msg} (got {arg.split('=', 1)[1]!r})"
    return msg


def _fail(message: str, code: int) -> None:
    """Print the one-line error and leave at once. Every stage's files and MLflow runs are closed by
    then (their ``with`` blocks have exited); skipping the interpreter's teardown avoids a race of
    native thread pools at exit that once in a few runs aborted a finished error path with
    "terminate called without an active exception" (exit 134 instead of 2)."""
    import os

    print(message, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors for bad input, exit status 2."""
    from typer.exceptions import Abort, Exit, TyperException

    argv = sys.argv[1:] if argv is None else argv
    try:
        app(args=argv or ["--help"], standalone_mode=False, prog_name="selfsup")
    except UserError as e:
        _fail(f"error: {' '.join(str(e).split())}", 2)
    except TyperException as e:  # bad option, missing option, wrong type
        _fail(f"error: {_usage_message(e, argv)}", 2)
    except Exit as e:
        sys.exit(e.exit_code)
    except (Abort, KeyboardInterrupt):
        _fail("error: interrupted", 130)
    except Exception as e:  # a bug, not bad input: still one line (SELFSUP_DEBUG=1 shows the traceback)
        import os

        if os.environ.get("SELFSUP_DEBUG"):
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        if type(e).__module__.startswith("mlflow"):  # the tracking server refused (login, network): not a bug
            where = os.environ.get("MLFLOW_TRACKING_URI", "the local MLflow store")
            _fail(f"error: MLflow tracking at {where}: {' '.join(str(e).split())}", 2)
        _fail(
            f"error: internal error {type(e).__name__}: {first} (please report it; SELFSUP_DEBUG=1 shows the "
            "traceback)",
            1,
        )


if __name__ == "__main__":
    main()
