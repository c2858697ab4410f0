"""Length-grouped sampling: batches of similar lengths, so padded batches waste little.

The order depends only on (seed, epoch), like :class:`~mmssl.data.examples.EpochSampler`,
so a resumed run sees the same batches. It is a plain index sampler whose consecutive
``batch_size`` chunks are the groups, so the DataLoader (and Accelerate's sharding and
``skip_first_batches``) batch it as usual.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from mmssl.data.examples import epoch_generator


class LengthGroupedSampler(Sampler[int]):
    """Shuffle, sort by length inside mega-batches of ``batch_size * group_batches``
    examples, cut into batches, and shuffle the order of the full batches.

    A partial batch (at most one, when the data does not divide evenly) comes last, where
    ``drop_last`` drops it, instead of shifting every later batch boundary.
    """

    def __init__(
        self, lengths: Sequence[int], batch_size: int, seed: int, group_batches: int = 50
    ) -> None:
        if batch_size < 1 or group_batches < 1:
            raise ValueError("batch_size and group_batches must be at least 1")
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)
        self.batch_size, self.seed, self.group_batches, self.epoch = batch_size, seed, group_batches, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def batches(self) -> list[list[int]]:
        """This epoch's batches, full ones first."""
        generator = epoch_generator(self.seed, self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator)
        mega = self.batch_size * self.group_batches
        full: list[list[int]] = []
        partial: list[list[int]] = []
        for start in range(0, len(order), mega):
            group = order[start : start + mega]
            group = group[torch.argsort(self.lengths[group], descending=True, stable=True)].tolist()
            for i in range(0, len(group), self.batch_size):
                chunk = group[i : i + self.batch_size]
                (full if len(chunk) == self.batch_size else partial).append(chunk)
        shuffled = torch.randperm(len(full), generator=generator).tolist()
        return [full[i] for i in shuffled] + partial

    def __iter__(self) -> Iterator[int]:
        return iter([index for batch in self.batches() for index in batch])
