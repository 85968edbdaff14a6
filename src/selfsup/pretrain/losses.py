"""Self-supervised losses as pure functions of embeddings (each tested against a direct reference).

Every loss computes in fp32 (:func:`fp32`): under bf16 autocast a similarity matrix or a
cross-correlation rounded to 8 bits of mantissa before ``cross_entropy`` would change the loss.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

LOW_PRECISION = (torch.float16, torch.bfloat16)


def fp32(fn):
    """``fn`` with autocast off and half-precision tensor arguments cast to fp32 (fp32 / fp64 untouched)."""

    @functools.wraps(fn)
    def inner(*args, **kwargs):
        tensors = [a for a in (*args, *kwargs.values()) if torch.is_tensor(a)]
        device = tensors[0].device.type if tensors else "cpu"

        def cast(v):
            return v.float() if torch.is_tensor(v) and v.dtype in LOW_PRECISION else v

        with torch.autocast(device, enabled=False):
            return fn(*map(cast, args), **{k: cast(v) for k, v in kwargs.items()})

    return inner


@fp32
def nt_xent(z0: torch.Tensor, z1: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy (Chen et al., arXiv:2002.05709).

    ``z0[i]`` and ``z1[i]`` (B, D) are two views of image i; every other embedding of the 2B is a
    negative. Mean over the 2B anchors."""
    b = z0.shape[0]
    z = F.normalize(torch.cat([z0, z1]), dim=1)  # (2B, D)
    sim = z @ z.t() / temperature  # (2B, 2B)
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    positives = torch.cat([torch.arange(b, 2 * b, device=z.device), torch.arange(0, b, device=z.device)])
    return F.cross_entropy(sim, positives)


@fp32
def info_nce(q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """InfoNCE with a bank of negatives (MoCo, CMC; Oord et al., arXiv:1807.03748).

    ``q[i]`` (B, D) is the anchor, ``k[i]`` (B, D) its positive and every row of ``negatives`` (K, D)
    a negative for all anchors. All are L2-normalised here. Mean over anchors of
    −log(exp(q·k/τ) / (exp(q·k/τ) + Σ_n exp(q·n/τ)))."""
    q, k, negatives = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(negatives, dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ negatives.t()], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


@fp32
def cross_view_info_nce(
    q: torch.Tensor, k: torch.Tensor, bank: torch.Tensor | None = None, temperature: float = 0.07, offset: int = 0
) -> torch.Tensor:
    """InfoNCE across two views with in-batch and bank negatives (CMC): anchor ``q[i]``, positive
    ``k[offset + i]``, negatives every other ``k[j]`` and every row of ``bank`` (M, D), all L2-normalised
    here. Mean over anchors of −log(exp(q_i·k_i/τ) / (Σ_j exp(q_i·k_j/τ) + Σ_m exp(q_i·bank_m/τ))).
    ``k`` may hold more rows than ``q`` (the global batch under data parallel, ``q`` at ``offset``)."""
    keys = k if bank is None or len(bank) == 0 else torch.cat([k, bank])
    logits = F.normalize(q, dim=1) @ F.normalize(keys, dim=1).t() / temperature
    return F.cross_entropy(logits, torch.arange(offset, offset + len(q), device=q.device))


@fp32
def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss (Grill et al., arXiv:2006.07733): mean of 2 − 2·cos(p_i, z_i); ``z`` is
    the target network's projection and gets no gradient."""
    return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=1)).mean()


@fp32
def barlow_twins(z0: torch.Tensor, z1: torch.Tensor, lambd: float = 5e-3, eps: float = 1e-5) -> torch.Tensor:
    """Barlow Twins (Zbontar et al., arXiv:2103.03230): with C the (D, D) cross-correlation of the two
    views' embeddings, each standardised over the batch, Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij²."""
    b = z0.shape[0]
    a0 = (z0 - z0.mean(0)) / torch.sqrt(z0.var(0, unbiased=False) + eps)
    a1 = (z1 - z1.mean(0)) / torch.sqrt(z1.var(0, unbiased=False) + eps)
    c = a0.t() @ a1 / b
    on = torch.diagonal(c)
    return ((1 - on) ** 2).sum() + lambd * ((c**2).sum() - (on**2).sum())


@fp32
def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) ‖ N(0, I)) per sample, summed over latent dimensions: (B, D) → (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)


@fp32
def amdim_nce(
    anchors: torch.Tensor, locals_: torch.Tensor, clip: float = 20.0, offset: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """AMDIM's contrast of anchors against local features (Bachman et al., arXiv:1906.00910).

    ``anchors`` (B, A, D): A features per image of one view; ``locals_`` (B, P, D): P local features per
    image of the other view. Scores s = a·l / √D are soft-clipped to c·tanh(s/c). For every image i,
    anchor a and location p the positive is s(a_i, l_ip) and the negatives are s(a_i, l_jq) for
    every other image j ≠ i and every location q. Returns (mean NCE loss, mean squared raw score:
    AMDIM's regulariser). ``locals_`` may hold more images (N) than ``anchors`` (the global batch under
    data parallel): anchor image i's own is ``locals_[offset + i]``."""
    b, a, d = anchors.shape
    n, p = locals_.shape[:2]
    raw = torch.einsum("iad,jpd->iajp", anchors, locals_) / d**0.5  # (B, A, N, P)
    s = clip * torch.tanh(raw / clip)
    own = torch.arange(b, device=s.device) + offset
    eye = (torch.arange(n, device=s.device)[None, :] == own[:, None]).view(b, 1, n, 1)
    pos = s[torch.arange(b, device=s.device), :, own, :]  # (B, A, P)
    neg = s.masked_fill(eye, float("-inf")).reshape(b, a, n * p)  # (B, A, N·P)
    neg_lse = torch.logsumexp(neg, dim=2, keepdim=True)  # (B, A, 1)
    loss = -(pos - torch.logaddexp(pos, neg_lse.expand_as(pos)))
    return loss.mean(), raw.pow(2).mean()
