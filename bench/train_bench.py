"""Training throughput: selfsup's loop (uint8 images resident on the device, batched per-sample
augmentation on the device) vs a naive loop (torchvision DataLoader over PIL images with per-image
transforms), same model, batch size and optimiser, in the same run.

    python bench/train_bench.py [--width 0.25] [--batch 128] [--steps 20] [--out bench/train_bench.json]

Prints and writes images/s, achieved GFLOP/s (FLOPs of one forward + backward counted by
torch.utils.flop_counter) and, for selfsup's loop, the share of a step spent outside the model's
forward/backward/optimiser step (data indexing, normalisation, augmentation). Uses the GPU when
there is one (bf16 autocast and channels-last there, fp32 channels-last on the CPU). Run it on a
quiet machine: it measures wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from selfsup.data.augment import colour_jitter, flip_translate, to_input
from selfsup.models import create_backbone


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def make_model(width: float, dev: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    bb = create_backbone("resnet9", width=width)
    model = nn.Sequential(bb, nn.Linear(bb.out_dim, 10)).to(dev).to(memory_format=torch.channels_last)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def step_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return float(fc.get_total_flops())


def _autocast(dev):
    return torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)


def selfsup_loop(images: np.ndarray, labels: np.ndarray, width: float, batch: int, steps: int, dev) -> dict:
    model, opt = make_model(width, dev)
    data = torch.from_numpy(images).to(dev)
    targets = torch.from_numpy(labels).to(dev)
    gen = torch.Generator().manual_seed(0)
    t_data = t_model = 0.0
    for i in range(steps + 2):  # two warm-up steps
        _sync(dev)
        t0 = time.perf_counter()
        idx = torch.randint(0, len(data), (batch,), generator=gen).to(dev)
        x = colour_jitter(flip_translate(to_input(data[idx]), 4, gen), gen)
        y = targets[idx]
        _sync(dev)
        t1 = time.perf_counter()
        with _autocast(dev):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(dev)
        t2 = time.perf_counter()
        if i >= 2:
            t_data, t_model = t_data + t1 - t0, t_model + t2 - t1
    flops = step_flops(model, x, y)
    return {
        "img_s": steps * batch / (t_data + t_model),
        "gflop_s": flops * steps / (t_data + t_model) / 1e9,
        "outside_model_share": t_data / (t_data + t_model),
        "model_only_img_s": steps * batch / t_model,
    }


def naive_loop(images: np.ndarray, labels: np.ndarray, width: float, batch: int, steps: int, dev, workers: int) -> dict:
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    tf = T.Compose(
        [
            T.RandomCrop(images.shape[1], padding=4),
            T.RandomHorizontalFlip(),
            T.ColorJitter(0.4, 0.4, 0.4),
            T.RandomGrayscale(0.2),
            T.ToTensor(),
            T.Normalize((0.45,) * 3, (0.25,) * 3),
        ]
    )

    class PilDataset(Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            return tf(Image.fromarray(images[i])), int(labels[i])

    loader = DataLoader(
        PilDataset(),
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    model, opt = make_model(width, dev)
    done, t0 = 0, 0.0
    while done < steps + 2:
        for x, y in loader:
            if done == 2:
                _sync(dev)
                t0 = time.perf_counter()
            x = x.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
            y = y.to(dev, non_blocking=True)
            with _autocast(dev):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == steps + 2:
                break
    _sync(dev)
    dt = time.perf_counter() - t0
    return {"img_s": steps * batch / dt, "gflop_s": step_flops(model, x, y) * steps / dt / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--side", type=int, default=64)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="DataLoader workers of the naive loop")
    ap.add_argument("--out", type=Path, default=Path("bench/train_bench.json"))
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, args.side, args.side, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, args.images)
    ours = selfsup_loop(images, labels, args.width, args.batch, args.steps, dev)
    naive = naive_loop(images, labels, args.width, args.batch, args.steps, dev, args.workers)
    doc = {
        "device": torch.cuda.get_device_name() if dev.type == "cuda" else f"cpu x{os.cpu_count()}",
        "host": platform.node(),
        "torch": torch.__version__,
        "model": f"resnet9 width {args.width}",
        "side": args.side,
        "batch": args.batch,
        "steps": args.steps,
        "naive_workers": args.workers,
        "selfsup": {k: round(v, 3) for k, v in ours.items()},
        "naive": {k: round(v, 3) for k, v in naive.items()},
        "speedup": round(ours["img_s"] / naive["img_s"], 2),
    }
    print(f"{doc['device']}, {doc['model']}, {args.side}², batch {args.batch}:")
    print(
        f"  selfsup loop {ours['img_s']:8.1f} img/s  {ours['gflop_s']:7.1f} GFLOP/s  "
        f"outside the model {100 * ours['outside_model_share']:.1f} % of a step"
    )
    print(
        f"  naive loop   {naive['img_s']:8.1f} img/s  {naive['gflop_s']:7.1f} GFLOP/s  "
        f"(DataLoader, {args.workers} workers, PIL transforms)  → ×{doc['speedup']}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
