"""`selfsup render`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from selfsup.cli.app import app
from selfsup.core.config import Dataset, Render

D, R = Dataset(), Render()  # the default study's values


@app.command()
def render(
    set: str = typer.Option(
        "single", "--set", help="single (64×64, one centred object) or multi (128×128, 4 objects, dense labels)."
    ),
    variant: str = typer.Option(D.variant, help="Factors T C V L, '-' for the easy version, e.g. '-CV-'."),
    count: int = typer.Option(D.count, help="Number of images (train/val/test ≈ 70/15/15 %)."),
    seed: int = typer.Option(R.seed, help="Scene sampling seed: same seed, same scenes."),
    out: Path = typer.Option(..., help="Dataset folder to write."),
    workers: int = typer.Option(R.workers, help="Render processes (each with its own Blender)."),
    resolution: Optional[int] = typer.Option(None, help="Image side in pixels (default: 64 single, 128 multi)."),
    samples: int = typer.Option(R.samples, help="Cycles samples per pixel."),
    denoise: str = typer.Option(
        R.denoise, help="none, or OpenImageDenoise with its fast or accurate prefilter (albedo and normal guides)."
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
    from selfsup.data.render import render_dataset
    from selfsup.data.shards import parse_shard

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
