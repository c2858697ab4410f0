"""Label subsets: seeded, class-balanced and nested, for label-efficiency curves.

Each class's examples are shuffled once with the seed; a fraction ``f`` takes the first
``ceil(f * n_class)`` of every class (at least one), so the 1% subset is a prefix of the
10% subset, which is a prefix of the 100% one: curves compare the same examples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _class_orders(labels: np.ndarray, seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {int(c): rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)}


def label_subsets(
    labels: Sequence[int] | np.ndarray, fractions: Sequence[float], seed: int = 0
) -> dict[float, np.ndarray]:
    """Sorted indices of each fraction's subset of ``labels``."""
    labels = np.asarray(labels)
    orders = _class_orders(labels, seed)
    subsets = {}
    for fraction in fractions:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
        taken = [order[: max(1, math.ceil(fraction * len(order)))] for order in orders.values()]
        subsets[float(fraction)] = np.sort(np.concatenate(taken))
    return subsets


def train_val_split(
    labels: Sequence[int] | np.ndarray, val_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, validation) indices; every class with 2+ examples gives one to each."""
    labels = np.asarray(labels)
    train, val = [], []
    for order in _class_orders(labels, seed + 1).values():
        n_val = min(len(order) - 1, max(1, round(val_fraction * len(order)))) if len(order) > 1 else 0
        val.append(order[:n_val])
        train.append(order[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
