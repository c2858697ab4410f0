"""Pairs for cross-modal alignment: from one paired dataset, two datasets sharing labels,
or labels turned into text with prompt templates.

Random choices (which caption, which recording of the digit, which template) are drawn in
``preprocess`` from torch's global generator, like augmentations: seeded by the run's seed
(and per DataLoader worker by the loader's generator), so they are reproducible and new
every epoch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import datasets
import torch


def random_index(n: int) -> int:
    """A uniform draw from ``range(n)`` on torch's (seeded) global generator."""
    return int(torch.randint(n, ()).item())


def pick_caption(value: Any, train: bool) -> str:
    """One caption from a cell holding a string or a list of them: random in training, the first in eval."""
    if isinstance(value, str):
        return value
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"expected a caption or a non-empty list of captions, got {value!r}")
    return str(value[random_index(len(value)) if train else 0])


def class_names(dataset: Any, column: str = "label") -> list[str] | None:
    """The names of a ``ClassLabel`` column, or None when the column has no names."""
    feature = (dataset.features or {}).get(column)
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def prompt_texts(class_names: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every template filled with every class name, grouped by class (class-major order)."""
    if not templates:
        raise ValueError("zero-shot needs at least one prompt template, e.g. 'a photo of a {name}'")
    bad = [t for t in templates if "{name}" not in t]
    if bad:
        raise ValueError(f"prompt templates need a '{{name}}' placeholder: {bad}")
    return [t.format(name=name) for name in class_names for t in templates]


class ClassPairing:
    """For each label, the partner examples with that label; draws one at random per call."""

    def __init__(self, partner_labels: Sequence[int], needed: Sequence[int]) -> None:
        pools: dict[int, list[int]] = defaultdict(list)
        for index, label in enumerate(partner_labels):
            pools[int(label)].append(index)
        missing = sorted({int(label) for label in needed} - set(pools))
        if missing:
            raise ValueError(f"task.pair_with: the partner data has no example of label(s) {missing}")
        self.pools = dict(pools)

    def pick(self, label: int) -> int:
        pool = self.pools[int(label)]
        return pool[random_index(len(pool))]


class PromptText:
    """Label -> text with templates: a random template in training, the first in eval."""

    def __init__(self, names: Sequence[str], templates: Sequence[str]) -> None:
        if not templates or any("{name}" not in t for t in templates):
            raise ValueError(f"task.prompts: templates need a '{{name}}' placeholder, got {list(templates)}")
        self.names, self.templates = list(names), list(templates)

    def __call__(self, label: int, train: bool) -> str:
        template = self.templates[random_index(len(self.templates)) if train else 0]
        return template.format(name=self.names[int(label)])
