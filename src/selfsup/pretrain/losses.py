"""Self-supervised losses as pure functions of embeddings (each tested against a direct reference)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z0: torch.Tensor, z1: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy (Chen et al., arXiv:2002.05709).

    ``z0[i]`` and ``z1[i]`` (B, D) are two views of image i; every other embedding of the 2B is a
    negative. Mean over the 2B anchors."""
    b = z0.shape[0]
    z = F.normalize(torch.cat([z0, z1]), dim=1)  # (2B, D)
    sim = z @ z.t() / temperature  # (2B, 2B)
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    positives = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, positives)


def info_nce(q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """InfoNCE with a bank of negatives (MoCo, CMC; Oord et al., arXiv:1807.03748).

    ``q[i]`` (B, D) is the anchor, ``k[i]`` (B, D) its positive and every row of ``negatives`` (K, D)
    a negative for all anchors. All are L2-normalised here. Mean over anchors of
    −log(exp(q·k/τ) / (exp(q·k/τ) + Σ_n exp(q·n/τ)))."""
    q, k, negatives = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(negatives, dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ negatives.t()], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def cross_view_info_nce(
    q: torch.Tensor, k: torch.Tensor, bank: torch.Tensor | None = None, temperature: float = 0.07
) -> torch.Tensor:
    """InfoNCE across two views with in-batch and bank negatives (CMC): anchor ``q[i]``, positive
    ``k[i]``, negatives every other ``k[j]`` and every row of ``bank`` (M, D), all L2-normalised here.
    Mean over anchors of −log(exp(q_i·k_i/τ) / (Σ_j exp(q_i·k_j/τ) + Σ_m exp(q_i·bank_m/τ)))."""
    keys = k if bank is None or len(bank) == 0 else torch.cat([k, bank])
    logits = F.normalize(q, dim=1) @ F.normalize(keys, dim=1).t() / temperature
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device))


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss (Grill et al., arXiv:2006.07733): mean of 2 − 2·cos(p_i, z_i); ``z`` is
    the target network's projection and gets no gradient."""
    return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=1)).mean()


def barlow_twins(z0: torch.Tensor, z1: torch.Tensor, lambd: float = 5e-3, eps: float = 1e-5) -> torch.Tensor:
    """Barlow Twins (Zbontar et al., arXiv:2103.03230): with C the (D, D) cross-correlation of the two
    views' embeddings, each standardised over the batch, Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij²."""
    b = z0.shape[0]
    a0 = (z0 - z0.mean(0)) / torch.sqrt(z0.var(0, unbiased=False) + eps)
    a1 = (z1 - z1.mean(0)) / torch.sqrt(z1.var(0, unbiased=False) + eps)
    c = a0.t() @ a1 / b
    on = torch.diagonal(c)
    return ((1 - on) ** 2).sum() + lambd * ((c**2).sum() - (on**2).sum())


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) ‖ N(0, I)) per sample, summed over latent dimensions: (B, D) → (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)


def amdim_nce(anchors: torch.Tensor, locals_: torch.Tensor, clip: float = 20.0) -> tuple[torch.Tensor, torch.Tensor]:
    """AMDIM's contrast of anchors against local features (Bachman et al., arXiv:1906.00910).

    ``anchors`` (B, A, D): A features per image of one view; ``locals_`` (B, P, D): P local features per
    image of the other view. Scores s = a·l / √D are soft-clipped to c·tanh(s/c). For every image i,
    anchor a and location p the positive is s(a_i, l_ip) and the negatives are s(a_i, l_jq) for
    every other image j ≠ i and every location q. Returns (mean NCE loss, mean squared raw score:
    AMDIM's regulariser)."""
    b, a, d = anchors.shape
    p = locals_.shape[1]
    raw = torch.einsum("iad,jpd->iajp", anchors, locals_) / d**0.5  # (B, A, B, P)
    s = clip * torch.tanh(raw / clip)
    eye = torch.eye(b, dtype=torch.bool, device=s.device).view(b, 1, b, 1)
    pos = torch.diagonal(s, dim1=0, dim2=2).permute(2, 0, 1)  # (B, A, P)
    neg = s.masked_fill(eye, float("-inf")).reshape(b, a, b * p)  # (B, A, B·P)
    neg_lse = torch.logsumexp(neg, dim=2, keepdim=True)  # (B, A, 1)
    loss = -(pos - torch.logaddexp(pos, neg_lse.expand_as(pos)))
    return loss.mean(), raw.pow(2).mean()
