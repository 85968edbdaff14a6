"""Batched, per-sample-random augmentation and input normalisation on tensors (any device)."""

from __future__ import annotations

import numpy as np
import torch

# per-channel statistics of uint8 RGB scaled to [0, 1]; a fixed normaliser keeps runs comparable
MEAN = (0.45, 0.45, 0.45)
STD = (0.25, 0.25, 0.25)


def to_input(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 → (B, 3, H, W) floats of the default dtype, normalised, channels-last in memory."""
    x = images.permute(0, 3, 1, 2).to(torch.get_default_dtype()).div_(255)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def map_batches(fn, images, device, batch: int = 512) -> torch.Tensor:
    """``fn`` of every (N, H, W, 3) uint8 image as network input, ``batch`` at a time; float, on the CPU."""
    return torch.cat(
        [
            fn(to_input(torch.from_numpy(np.asarray(images[i : i + batch])).to(device))).float().cpu()
            for i in range(0, len(images), batch)
        ]
    )


def random_flip(x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal flip (p = 0.5) of each image of the (B, C, H, W) batch; returns the batch and the
    (B,) mask of flipped images (to flip dense targets alike)."""
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)  # draws on the generator's device
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x), flip


def random_translate(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop of the batch padded by ``pad`` zeros (the normalised mean) on every side: a
    translation by up to ``pad`` pixels, drawn independently for every image."""
    b, c, h, w = x.shape
    dev = x.device
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
    iy = (oy[:, None] + torch.arange(h, device=dev)).view(b, 1, h, 1).expand(b, c, h, w + 2 * pad)
    rows = torch.gather(xp, 2, iy)  # (B, C, H, W+2p)
    ix = (ox[:, None] + torch.arange(w, device=dev)).view(b, 1, 1, w).expand(b, c, h, w)
    return torch.gather(rows, 3, ix).contiguous(memory_format=torch.channels_last)


def flip_translate(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip (p = 0.5) and translation by up to ``pad`` pixels (zero fill), drawn
    independently for every image of the (B, C, H, W) batch."""
    x, _ = random_flip(x, generator)
    return random_translate(x, pad, generator) if pad > 0 else x


def colour_jitter(
    x: torch.Tensor, generator: torch.Generator, strength: float = 0.4, grey_p: float = 0.2
) -> torch.Tensor:
    """Per-image random brightness, contrast and saturation (factors in [1 − s, 1 + s]) and greyscale
    with probability ``grey_p``, on a normalised (B, 3, H, W) batch."""
    b, dev = x.shape[0], x.device

    def factor() -> torch.Tensor:
        return (1 + strength * (2 * torch.rand(b, generator=generator) - 1)).to(dev).view(b, 1, 1, 1)

    grey = x.mean(1, keepdim=True)
    x = grey + (x - grey) * factor()  # saturation
    mean = x.mean((1, 2, 3), keepdim=True)
    x = mean + (x - mean) * factor()  # contrast
    x = x + (factor() - 1)  # brightness (normalised units)
    to_grey = (torch.rand(b, generator=generator) < grey_p).to(dev).view(b, 1, 1, 1)
    return torch.where(to_grey, x.mean(1, keepdim=True).expand_as(x), x).contiguous(memory_format=torch.channels_last)


def resized_crop(
    x: torch.Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.35, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """Per-image random crop of ``scale`` × the area with aspect ``ratio``, resized back to (H, W)
    bilinearly and flipped horizontally with p = 0.5: one ``grid_sample`` for the whole batch."""
    b, dev = x.shape[0], x.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=generator)

    area = uniform(*scale)
    log_r = uniform(float(torch.log(torch.tensor(ratio[0]))), float(torch.log(torch.tensor(ratio[1]))))
    aspect = torch.exp(log_r)
    sw = torch.sqrt(area * aspect).clamp(max=1.0)  # crop width / image width
    sh = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (2 * torch.rand(b, generator=generator) - 1) * (1 - sw)  # centre in [-1, 1] coordinates
    cy = (2 * torch.rand(b, generator=generator) - 1) * (1 - sh)
    flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sw * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = sh, cy
    grid = torch.nn.functional.affine_grid(theta.to(dev, x.dtype), list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(
        x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    ).contiguous(memory_format=torch.channels_last)


def cutout(x: torch.Tensor, generator: torch.Generator, size: float = 0.25, p: float = 0.5) -> torch.Tensor:
    """Zero (the normalised mean) a random square of side ``size`` × H in each image with probability ``p``."""
    b, _, h, w = x.shape
    dev = x.device
    s = max(1, round(size * h))
    cy = torch.randint(0, h, (b,), generator=generator).to(dev).view(b, 1, 1)
    cx = torch.randint(0, w, (b,), generator=generator).to(dev).view(b, 1, 1)
    on = (torch.rand(b, generator=generator) < p).to(dev).view(b, 1, 1)
    ys, xs = torch.arange(h, device=dev).view(1, h, 1), torch.arange(w, device=dev).view(1, 1, w)
    hole = on & ((ys - cy).abs() <= s // 2) & ((xs - cx).abs() <= s // 2)
    return x.masked_fill(hole.unsqueeze(1), 0.0).contiguous(memory_format=torch.channels_last)


def contrastive_view(x: torch.Tensor, generator: torch.Generator, cut: bool = False) -> torch.Tensor:
    """One view for the multi-view methods: resized crop + flip, colour jitter + greyscale (and cutout)."""
    v = colour_jitter(resized_crop(x, generator), generator)
    return cutout(v, generator) if cut else v


def flip_targets(y: torch.Tensor, flip: torch.Tensor, mirror) -> torch.Tensor:
    """``y`` where an image was not flipped, ``mirror(y)`` (the flipped images' targets) where it was."""
    return torch.where(flip.view(-1, *([1] * (y.ndim - 1))), mirror(y), y)


def finetune_view(
    x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, dense: bool, mirror=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's finetuning augmentation (appendix A, with the released code's sizes): flip,
    crop with zero padding of H/8, brightness / colour perturbation with greyscale 25 %, and Cutout
    of side H/4, per image. Dense tasks (targets on the feature-map grid, last axis = width) skip the
    crop, as the paper does for depth. Targets follow the flip: ``mirror`` maps a batch of targets
    to those of the mirrored images (a dense map flips along its width when it is not given)."""
    x, flip = random_flip(x, generator)
    mirror = mirror or ((lambda t: t.flip(-1)) if dense else None)
    if mirror is not None:
        y = flip_targets(y, flip, mirror)
    if not dense:
        x = random_translate(x, max(1, x.shape[2] // 8), generator)
    x = colour_jitter(x, generator, strength=0.4, grey_p=0.25)
    return cutout(x, generator, size=0.25, p=1.0), y
