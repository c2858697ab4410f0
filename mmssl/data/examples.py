"""Examples for the DataLoader: per-example preprocessing under the bad-example policy.

Random augmentations draw from a generator seeded by (seed, epoch, index) for each example,
not from the process-wide RNG: the same example gets the same views in the same epoch
whatever the number of DataLoader workers, and a resumed run that skips batches replays
them exactly.

With ``on_bad_example: raise`` a failing example stops the run with its dataset index and
the reason; with ``skip`` it is dropped from its batch and counted, and the count reaches
the loop through the batch key ``num_bad_examples``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, IterableDataset, Sampler

from mmssl.errors import BadExampleError

BAD_KEY = "num_bad_examples"


class _Bad:
    """A placeholder for a skipped example, carrying why it was skipped."""

    def __init__(self, index: int, reason: str) -> None:
        self.index, self.reason = index, reason


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator an epoch's sampling order is drawn from: a function of (seed, epoch) only."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def example_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed unique to one example in one epoch of one run."""
    return ((seed * 1_000_003 + epoch) * 1_000_003 + index) % (2**63)


def _apply(
    preprocess: Callable[[dict], dict], example: dict, index: int, policy: str, seed: int
) -> dict | _Bad:
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return preprocess(example)
    except Exception as err:  # any failure of user data is judged by the policy
        reason = f"{type(err).__name__}: {err}"
        if policy == "raise":
            raise BadExampleError(
                f"example {index}: {reason} (set data.on_bad_example=skip to skip such examples)"
            ) from err
        return _Bad(index, reason)


class MapExamples(Dataset):
    """A map-style view of a ``datasets.Dataset`` that preprocesses on access."""

    def __init__(
        self, data: Any, preprocess: Callable[[dict], dict], policy: str, seed: int = 0
    ) -> None:
        self.data, self.preprocess, self.policy = data, preprocess, policy
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict | _Bad:
        try:
            example = self.data[int(index)]
        except Exception as err:
            if self.policy == "raise":
                raise BadExampleError(f"example {index}: cannot be read: {err}") from err
            return _Bad(int(index), str(err))
        seed = example_seed(self.seed, self.epoch, int(index))
        return _apply(self.preprocess, example, int(index), self.policy, seed)


class StreamExamples(IterableDataset):
    """An iterable view of a streaming ``datasets.IterableDataset``."""

    def __init__(
        self, data: Any, preprocess: Callable[[dict], dict], policy: str, seed: int = 0
    ) -> None:
        self.data, self.preprocess, self.policy = data, preprocess, policy
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.data.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict | _Bad]:
        for index, example in enumerate(self.data):
            seed = example_seed(self.seed, self.epoch, index)
            yield _apply(self.preprocess, example, index, self.policy, seed)


class SkippingCollator:
    """Wraps a task's collate: drops skipped examples and reports how many there were."""

    def __init__(self, collate: Callable[[list[dict]], dict]) -> None:
        self.collate = collate

    def __call__(self, examples: list[dict | _Bad]) -> dict[str, Any]:
        good = [ex for ex in examples if not isinstance(ex, _Bad)]
        batch = self.collate(good) if good else {}
        batch[BAD_KEY] = torch.tensor([len(examples) - len(good)])
        return batch


class EpochSampler(Sampler[int]):
    """A seeded shuffle that depends only on (seed, epoch), so a resumed run sees the same order."""

    def __init__(self, length: int, seed: int, shuffle: bool = True) -> None:
        self.length, self.seed, self.shuffle, self.epoch = length, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.length))
        generator = epoch_generator(self.seed, self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())
