"""Colour spaces for network input: sRGB → CIE Lab (D65), as pure torch functions.

The paper fed Lab to every method; ``--colour lab`` does the same. Augmentations run on RGB and the
backbone converts its (normalised RGB) input at the start of ``forward``, so every method and task
works unchanged in either space.
"""

from __future__ import annotations

import torch

from selfsup.data.augment import MEAN, STD

COLOURS = ("rgb", "lab")

# sRGB (linear) → XYZ, D65 white (IEC 61966-2-1)
_RGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375), (0.2126729, 0.7151522, 0.0721750), (0.0193339, 0.1191920, 0.9503041))
_WHITE = (0.95047, 1.0, 1.08883)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) sRGB in [0, 1] → (B, 3, H, W) Lab with L in [0, 100] and a, b roughly in [-110, 110]."""
    rgb = rgb.clamp(0, 1)
    lin = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = torch.tensor(_RGB_TO_XYZ, dtype=rgb.dtype, device=rgb.device)
    xyz = torch.einsum("ij,bjhw->bihw", m, lin)
    xyz = xyz / torch.tensor(_WHITE, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    eps = (6 / 29) ** 3
    f = torch.where(xyz > eps, xyz.clamp_min(eps) ** (1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


def to_colour(x: torch.Tensor, colour: str) -> torch.Tensor:
    """A normalised RGB batch (``augment.to_input``) in the network's colour space: unchanged for
    ``rgb``; for ``lab``, L/50 − 1 and a/50, b/50 (roughly unit scale)."""
    if colour == "rgb":
        return x
    mean = torch.tensor(MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    lab = rgb_to_lab(x * std + mean)
    scale = torch.tensor((50.0, 50.0, 50.0), dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    shift = torch.tensor((1.0, 0.0, 0.0), dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (lab / scale - shift).contiguous(memory_format=torch.channels_last)
