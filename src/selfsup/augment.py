"""Batched, per-sample-random augmentation and input normalisation on tensors (any device)."""

from __future__ import annotations

import torch

# per-channel statistics of uint8 RGB scaled to [0, 1]; a fixed normaliser keeps runs comparable
MEAN = (0.45, 0.45, 0.45)
STD = (0.25, 0.25, 0.25)


def to_input(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 → (B, 3, H, W) float, normalised, channels-last in memory."""
    x = images.permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def flip_translate(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip (p = 0.5) and translation by up to ``pad`` pixels (zero fill), drawn
    independently for every image of the (B, C, H, W) batch."""
    b, c, h, w = x.shape
    dev = x.device
    flip = (torch.rand(b, generator=generator) < 0.5).to(dev)  # draws on the generator's device
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)
    if pad <= 0:
        return x
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
    iy = (oy[:, None] + torch.arange(h, device=dev)).view(b, 1, h, 1).expand(b, c, h, w + 2 * pad)
    rows = torch.gather(xp, 2, iy)                                           # (B, C, H, W+2p)
    ix = (ox[:, None] + torch.arange(w, device=dev)).view(b, 1, 1, w).expand(b, c, h, w)
    return torch.gather(rows, 3, ix).contiguous(memory_format=torch.channels_last)
