import numpy as np
import pytest
import torch

from selfsup.data.augment import colour_jitter
from selfsup.pretrain import losses
from selfsup.pretrain.losses import (
    amdim_nce,
    barlow_twins,
    byol_loss,
    cross_view_info_nce,
    gaussian_kl,
    info_nce,
    nt_xent,
)


def _nt_xent_reference(z0: np.ndarray, z1: np.ndarray, t: float) -> float:
    """A direct loop over anchors: -log(exp(s_pos/t) / sum_{k != i} exp(s_ik/t))."""
    z = np.concatenate([z0, z1])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n, b = len(z), len(z0)
    total = 0.0
    for i in range(n):
        j = (i + b) % n
        sims = [float(z[i] @ z[k]) / t for k in range(n) if k != i]
        total += -(float(z[i] @ z[j]) / t - np.log(np.sum(np.exp(sims))))
    return total / n


@pytest.mark.parametrize("b,d,t", [(2, 3, 0.5), (8, 16, 0.1), (5, 7, 0.07)])
def test_nt_xent_matches_a_numpy_loop(b, d, t):
    g = torch.Generator().manual_seed(b * d)
    z0, z1 = torch.randn(b, d, generator=g, dtype=torch.float64), torch.randn(b, d, generator=g, dtype=torch.float64)
    assert float(nt_xent(z0, z1, t)) == pytest.approx(_nt_xent_reference(z0.numpy(), z1.numpy(), t), rel=1e-9)


def test_nt_xent_is_low_for_aligned_views_and_high_for_random_ones():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 8, generator=g)
    assert float(nt_xent(z, z, 0.1)) < float(nt_xent(z, torch.randn(16, 8, generator=g), 0.1))


def test_colour_jitter_is_per_image_and_keeps_shape():
    x = torch.ones(6, 3, 4, 4)
    y = colour_jitter(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and len(torch.unique(y.mean((1, 2, 3)))) > 1


def _normed(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.mark.parametrize("b,k,d,t", [(3, 5, 4, 0.2), (8, 0, 6, 0.07), (4, 16, 8, 0.5)])
def test_info_nce_with_a_queue_matches_a_numpy_loop(b, k, d, t):
    g = torch.Generator().manual_seed(b + k)
    q, kk, neg = (torch.randn(n, d, generator=g, dtype=torch.float64) for n in (b, b, k))
    qn, kn, nn_ = _normed(q.numpy()), _normed(kk.numpy()), (_normed(neg.numpy()) if k else np.zeros((0, d)))
    ref = 0.0
    for i in range(b):
        pos = qn[i] @ kn[i] / t
        logits = [pos] + [qn[i] @ nn_[m] / t for m in range(k)]
        ref += -(pos - np.log(np.sum(np.exp(logits))))
    assert float(info_nce(q, kk, neg, t)) == pytest.approx(ref / b, rel=1e-9)


@pytest.mark.parametrize("b,m,d,t", [(4, 0, 3, 0.07), (5, 6, 4, 0.2)])
def test_cross_view_info_nce_matches_a_numpy_loop(b, m, d, t):
    g = torch.Generator().manual_seed(b * m + 1)
    q, k, bank = (torch.randn(n, d, generator=g, dtype=torch.float64) for n in (b, b, m))
    qn, kn = _normed(q.numpy()), _normed(k.numpy())
    keys = np.concatenate([kn, _normed(bank.numpy())]) if m else kn
    ref = np.mean([-(qn[i] @ kn[i] / t - np.log(np.sum(np.exp([qn[i] @ c / t for c in keys])))) for i in range(b)])
    assert float(cross_view_info_nce(q, k, bank, t)) == pytest.approx(ref, rel=1e-9)


def test_byol_loss_is_two_minus_two_cosine_and_stops_target_gradients():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    z = torch.tensor([[1.0, 1.0], [0.0, -1.0]], requires_grad=True)
    loss = byol_loss(p, z)
    assert float(loss.detach()) == pytest.approx(((2 - 2 / np.sqrt(2)) + 4) / 2)
    loss.backward()
    assert z.grad is None and p.grad is not None


@pytest.mark.parametrize("b,d,lambd", [(6, 3, 5e-3), (10, 5, 0.1)])
def test_barlow_twins_matches_a_numpy_loop(b, d, lambd):
    g = torch.Generator().manual_seed(d)
    z0, z1 = torch.randn(b, d, generator=g, dtype=torch.float64), torch.randn(b, d, generator=g, dtype=torch.float64)
    a0, a1 = z0.numpy(), z1.numpy()
    a0 = (a0 - a0.mean(0)) / np.sqrt(a0.var(0) + 1e-5)
    a1 = (a1 - a1.mean(0)) / np.sqrt(a1.var(0) + 1e-5)
    ref = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a0[n, i] * a1[n, j] for n in range(b)) / b
            ref += (1 - c) ** 2 if i == j else lambd * c**2
    assert float(barlow_twins(z0, z1, lambd)) == pytest.approx(ref, rel=1e-9)


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(3)
    mu, logvar = (
        torch.randn(4, 6, generator=g, dtype=torch.float64),
        torch.randn(4, 6, generator=g, dtype=torch.float64),
    )
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    prior = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    ref = torch.distributions.kl_divergence(q, prior).sum(1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), ref)


@pytest.mark.parametrize("b,a,p,d,clip", [(3, 1, 4, 5, 20.0), (4, 2, 3, 6, 1.0)])
def test_amdim_nce_matches_a_numpy_loop(b, a, p, d, clip):
    g = torch.Generator().manual_seed(a * p)
    anchors = torch.randn(b, a, d, generator=g, dtype=torch.float64) * 3
    locals_ = torch.randn(b, p, d, generator=g, dtype=torch.float64) * 3
    A, L = anchors.numpy(), locals_.numpy()

    def s(i, x, j, y):
        return clip * np.tanh((A[i, x] @ L[j, y]) / np.sqrt(d) / clip)

    losses, sq = [], []
    for i in range(b):
        for x in range(a):
            negs = [s(i, x, j, y) for j in range(b) if j != i for y in range(p)]
            for y in range(p):
                pos = s(i, x, i, y)
                losses.append(-(pos - np.log(np.exp(pos) + np.sum(np.exp(negs)))))
            sq += [((A[i, x] @ L[j, y]) / np.sqrt(d)) ** 2 for j in range(b) for y in range(p)]
    loss, reg = amdim_nce(anchors, locals_, clip)
    assert float(loss) == pytest.approx(np.mean(losses), rel=1e-9)
    assert float(reg) == pytest.approx(np.mean(sq), rel=1e-9)


def _loss_cases():
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g)

    return {
        "nt_xent": (losses.nt_xent, (r(16, 32), r(16, 32))),
        "info_nce": (losses.info_nce, (r(16, 32), r(16, 32), r(64, 32))),
        "cross_view_info_nce": (losses.cross_view_info_nce, (r(16, 32), r(16, 32), r(64, 32))),
        "barlow_twins": (losses.barlow_twins, (r(16, 32), r(16, 32))),
        "amdim_nce": (lambda a, b: losses.amdim_nce(a, b)[0], (r(8, 4, 32), r(8, 16, 32))),
    }


@pytest.mark.parametrize("name", list(_loss_cases()))
def test_losses_compute_in_fp32_under_bf16_autocast(name):
    """Under autocast a bf16 similarity matrix or cross-correlation would change the loss (issue 28)."""
    fn, args = _loss_cases()[name]
    ref = fn(*args)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fn(*args)
        from_bf16 = fn(*(a.bfloat16() for a in args))  # half-precision embeddings are cast up, not an error
        raw = getattr(losses, name).__wrapped__  # the same loss without the fp32 guard
        rounded = raw(*args) if name != "amdim_nce" else raw(*args)[0]
    assert got.dtype == torch.float32 and torch.allclose(got, ref, rtol=1e-6), (got, ref)
    assert from_bf16.dtype == torch.float32 and torch.isfinite(from_bf16)
    assert not torch.allclose(rounded.float(), ref, rtol=1e-6)  # what autocast alone would have given
