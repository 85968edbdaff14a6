"""Label budgets: seeded, nested, class-balanced subsets of the train split (pure functions)."""

from __future__ import annotations

import numpy as np

from selfsup.core.errors import UserError


def nested_order(train_idx: np.ndarray, targets: np.ndarray, seed: int) -> np.ndarray:
    """An order of ``train_idx`` whose every prefix is as class-balanced as possible: items are
    ranked by their position in a seeded shuffle of their own class, ties broken at random.
    The subset for budget n is the first n items, so a smaller budget's subset is always inside
    a larger one's (for the same seed)."""
    rng = np.random.default_rng([seed, 4242])
    perm = rng.permutation(len(train_idx))
    rank = np.empty(len(train_idx), dtype=np.int64)
    for c in np.unique(targets):
        members = perm[targets[perm] == c]  # this class, in shuffled order
        rank[members] = np.arange(len(members))
    tiebreak = rng.random(len(train_idx))
    return train_idx[np.lexsort((tiebreak, rank))]


def label_subset(train_idx: np.ndarray, targets: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """The ``budget`` labelled training items for ``seed`` (nested across budgets)."""
    if budget < 1:
        raise UserError(f"invalid label budget {budget}: must be at least 1")
    if budget > len(train_idx):
        raise UserError(f"label budget {budget} is larger than the train split ({len(train_idx)} images)")
    return nested_order(train_idx, targets, seed)[:budget]
