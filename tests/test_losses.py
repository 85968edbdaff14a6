import numpy as np
import pytest
import torch

from selfsup.augment import colour_jitter
from selfsup.losses import nt_xent


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
