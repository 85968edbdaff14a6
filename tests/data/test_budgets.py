import numpy as np
import pytest
import torch

from selfsup.core.errors import UserError
from selfsup.data.budgets import label_subset
from selfsup.train.schedule import epoch_batches, warmup_cosine, warmup_linear


def _data(n=500, classes=10):
    rng = np.random.default_rng(0)
    return np.arange(1000, 1000 + n), rng.integers(classes, size=n)


def test_subsets_are_nested_across_budgets_and_differ_across_seeds():
    idx, y = _data()
    for seed in (0, 1):
        small, mid, big = (set(label_subset(idx, y, b, seed)) for b in (10, 100, 250))
        assert small < mid < big
    assert set(label_subset(idx, y, 100, 0)) != set(label_subset(idx, y, 100, 1))


def test_small_subsets_are_class_balanced():
    idx, y = _data()
    sub = label_subset(idx, y, 50, 3)
    counts = np.bincount(y[np.searchsorted(idx, sub)], minlength=10)
    assert counts.min() == counts.max() == 5


def test_budget_larger_than_train_split_is_an_error_naming_it():
    idx, y = _data(40)
    with pytest.raises(UserError, match="label budget 41"):
        label_subset(idx, y, 41, 0)


def test_every_budget_gets_the_same_number_of_steps():
    g = torch.Generator().manual_seed(0)
    for n in (3, 50, 1000):
        b = epoch_batches(n, 16, 25, g)
        assert b.shape == (25, 16) and int(b.max()) < n
    # a small subset is repeated: each item seen equally often (± one pass)
    counts = torch.bincount(epoch_batches(10, 16, 25, g).flatten(), minlength=10)
    assert counts.max() - counts.min() <= 1


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.0)


def test_warmup_linear_schedule():
    assert warmup_linear(0, 100, 10) == pytest.approx(0.1)
    assert warmup_linear(10, 100, 10) == pytest.approx(1.0)
    assert warmup_linear(55, 100, 10) == pytest.approx(0.5)
    assert warmup_linear(100, 100, 10) == pytest.approx(0.0)
