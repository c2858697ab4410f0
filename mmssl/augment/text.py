"""Token-id views for the text joint-embedding tasks: span deletion, then token dropout.

They run on a tokenized example (``[CLS] ids [SEP]``, or a packed block) in ``preprocess``.
Special tokens ([CLS], [SEP], padding) are never removed, and a view always keeps at least
one ordinary token, so no view is an empty text. Every draw comes from torch's RNG (the
global one, which the loop seeds per example and epoch, or an explicit ``generator``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from mmssl.augment.configs import TextViewConfig


def token_dropout(ids: torch.Tensor, special: torch.Tensor, p: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Drop each ordinary token (``~special``) with probability ``p``; if all would go, one
    drawn uniformly stays."""
    ordinary = ~special
    keep = special | (torch.rand(ids.shape, generator=generator) >= p)
    if ordinary.any() and not (keep & ordinary).any():
        positions = ordinary.nonzero().flatten()
        keep[positions[int(torch.randint(len(positions), (), generator=generator))]] = True
    return ids[keep]


def span_deletion(ids: torch.Tensor, special: torch.Tensor, max_fraction: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Delete one run of consecutive ordinary tokens, 1 to ``max_fraction`` of them long
    (never all); special tokens inside the run stay."""
    positions = (~special).nonzero().flatten()
    longest = min(int(max_fraction * len(positions)), len(positions) - 1)
    if longest < 1:
        return ids
    length = int(torch.randint(1, longest + 1, (), generator=generator))
    start = int(torch.randint(0, len(positions) - length + 1, (), generator=generator))
    keep = torch.ones_like(special)
    keep[positions[start : start + length]] = False
    return ids[keep]


class TextViews:
    """One augmented view of a 1-D tensor of token ids."""

    def __init__(self, view: TextViewConfig, special_ids: Iterable[int]) -> None:
        self.view = view
        self.special_ids = torch.tensor(sorted(set(special_ids)), dtype=torch.long)

    def __call__(self, ids: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        v = self.view
        if v.span_deletion_prob > 0 and float(torch.rand((), generator=generator)) < v.span_deletion_prob:
            ids = span_deletion(ids, torch.isin(ids, self.special_ids), v.span_max_fraction, generator)
        if v.token_dropout > 0:
            ids = token_dropout(ids, torch.isin(ids, self.special_ids), v.token_dropout, generator)
        return ids
