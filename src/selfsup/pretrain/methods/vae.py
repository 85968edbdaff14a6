"""Variational auto-encoder (Kingma & Welling, arXiv:1312.6114), the paper's generative baseline: the
backbone encodes to a Gaussian posterior, a small upsampling decoder reconstructs the (normalised)
input; loss = squared error + β·KL, per pixel."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.data.augment import draws, flip_translate, to_device
from selfsup.pretrain.losses import gaussian_kl
from selfsup.pretrain.methods import METHODS, Method


def _up(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


@METHODS.register("vae")
class VAE(Method):
    knobs = {"beta": (0.1, 10.0, "log")}  # what `selfsup tune --pretrain` searches

    def __init__(self, backbone: nn.Module, latent: int = 64, beta: float = 1.0, base: int = 4, pad: int = 4):
        super().__init__(backbone)
        d = backbone.out_dim
        self.to_stats = nn.Linear(d, 2 * latent)
        c = max(16, d)
        self.base, self.c, self.beta, self.pad = base, c, beta, pad
        self.from_latent = nn.Linear(latent, c * base * base)
        self.decoder = nn.Sequential(
            _up(c, c // 2), _up(c // 2, c // 4), _up(c // 4, c // 4), nn.Conv2d(c // 4, 3, 3, padding=1)
        )

    def decode(self, z: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h = self.from_latent(z).view(-1, self.c, self.base, self.base)
        return F.interpolate(self.decoder(h), size=size, mode="bilinear", align_corners=False)

    def loss(self, x, generator):
        x = flip_translate(x, self.pad, generator)
        mu, logvar = self.to_stats(self.backbone(x)).chunk(2, dim=1)
        logvar = logvar.clamp(-10, 10)
        eps = to_device(draws(generator).randn(*mu.shape), mu.device, mu.dtype)
        z = mu + eps * torch.exp(0.5 * logvar)
        recon = self.decode(z, x.shape[-2:])
        n = x[0].numel()
        rec = F.mse_loss(recon, x, reduction="none").flatten(1).sum(1)
        kl = gaussian_kl(mu, logvar)
        return (rec + self.beta * kl).mean() / n, {"recon": rec.detach().mean() / n, "kl": kl.detach().mean()}
