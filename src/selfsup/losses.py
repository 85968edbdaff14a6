"""Self-supervised losses as pure functions of embeddings (each tested against a direct reference)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z0: torch.Tensor, z1: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy (Chen et al., arXiv:2002.05709).

    ``z0[i]`` and ``z1[i]`` (B, D) are two views of image i; every other embedding of the 2B is a
    negative. Mean over the 2B anchors."""
    b = z0.shape[0]
    z = F.normalize(torch.cat([z0, z1]), dim=1)                          # (2B, D)
    sim = z @ z.t() / temperature                                        # (2B, 2B)
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    positives = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, positives)
