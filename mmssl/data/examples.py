"""Examples for the DataLoader: per-example preprocessing under the bad-example policy.

Random augmentations draw from a generator seeded by (seed, epoch, index) for each example,
not from the process-wide RNG: the same example gets the same views in the same epoch
whatever the number of DataLoader workers, and a resumed run that skips batches replays
them exactly.

With ``on_bad_example: raise`` a failing example stops the run with its dataset index,
where it comes from (the media file of a folder source, or the parquet file and row) and
the reason; with ``skip`` it is dropped from its batch, logged once (in the first epoch)
with the same description, and counted: the batch keys ``num_bad_examples`` (how many)
and ``bad_example_rows`` (which, -1 padded to the batch size) reach the loop, which counts
each bad example of a map-style dataset once however many epochs meet it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, IterableDataset, Sampler

from mmssl.errors import BadExampleError

BAD_KEY = "num_bad_examples"
BAD_ROWS_KEY = "bad_example_rows"

log = logging.getLogger(__name__)


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


def media_file(example: dict) -> str | None:
    """The file an undecoded media cell was read from (image/audio folder sources), if any."""
    for value in example.values():
        if isinstance(value, dict) and not value.get("bytes") and isinstance(value.get("path"), str):
            return value["path"]
    return None


def describe_example(index: int, example: dict | None, locate: Callable[[int], str] | None) -> str:
    """``example 17 (file cats/3.png)`` or ``example 17 (train.parquet row 17)``."""
    where = media_file(example) if example else None
    where = f"file {where}" if where else (locate(index) if locate else None)
    return f"example {index} ({where})" if where else f"example {index}"


def _bad(
    index: int, example: dict | None, err: Exception, policy: str, epoch: int,
    locate: Callable[[int], str] | None,
) -> _Bad:
    """Raise for ``policy: raise``; else a placeholder, logged the first epoch it is met."""
    what = describe_example(index, example, locate)
    reason = f"{type(err).__name__}: {err}"
    if policy == "raise":
        raise BadExampleError(
            f"{what}: {reason} (set data.on_bad_example=skip to skip such examples)"
        ) from err
    if epoch == 0:
        log.warning("skipping bad %s: %s", what, reason)
    return _Bad(index, reason)


def _apply(preprocess: Callable[[dict], dict], example: dict, seed: int) -> dict:
    """``preprocess`` with the torch CPU RNG seeded for this example, the global RNG untouched.

    Only the CPU generator is seeded (preprocessing draws on the CPU): ``torch.manual_seed``
    would also queue a lazy seed for every accelerator backend, recording a Python traceback
    each time, which cost about 0.3 ms per example, 7% of SimCLR's per-image preprocessing.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return preprocess(example)


class MapExamples(Dataset):
    """A map-style view of a ``datasets.Dataset`` that preprocesses on access."""

    def __init__(
        self, data: Any, preprocess: Callable[[dict], dict], policy: str, seed: int = 0,
        locate: Callable[[int], str] | None = None,
    ) -> None:
        self.data, self.preprocess, self.policy = data, preprocess, policy
        self.seed, self.epoch, self.locate = seed, 0, locate

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict | _Bad:
        index, example = int(index), None
        try:
            example = self.data[index]
            return _apply(self.preprocess, example, example_seed(self.seed, self.epoch, index))
        except Exception as err:  # any failure of user data is judged by the policy
            return _bad(index, example, err, self.policy, self.epoch, self.locate)


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
            try:
                out = _apply(self.preprocess, example, example_seed(self.seed, self.epoch, index))
            except Exception as err:  # any failure of user data is judged by the policy
                out = _bad(index, example, err, self.policy, self.epoch, None)
            yield out


class SkippingCollator:
    """Wraps a task's collate: drops skipped examples and reports how many and which."""

    def __init__(self, collate: Callable[[list[dict]], dict]) -> None:
        self.collate = collate

    def __call__(self, examples: list[dict | _Bad]) -> dict[str, Any]:
        good = [ex for ex in examples if not isinstance(ex, _Bad)]
        batch = self.collate(good) if good else {}
        batch[BAD_KEY] = torch.tensor([len(examples) - len(good)])
        rows = [ex.index for ex in examples if isinstance(ex, _Bad)]
        batch[BAD_ROWS_KEY] = torch.tensor(rows + [-1] * (len(examples) - len(rows)), dtype=torch.long)
        return batch


def count_new_bad(rows: torch.Tensor, seen: list[int]) -> int:
    """How many of the bad ``rows`` (-1: none) were not met before; adds them to ``seen``."""
    new = sorted(set(rows[rows >= 0].tolist()) - set(seen))
    seen.extend(new)
    return len(new)


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
