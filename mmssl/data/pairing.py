"""Pairs for cross-modal alignment: from one paired dataset, two datasets sharing labels,
or labels turned into text with prompt templates.

``build_pairing`` chooses one from the recipe (``task.pair_with``, ``task.prompts``,
``task.class_names``) and the data's columns, and returns a :class:`Pairing`: it loads the
partner data itself, makes each example's pair (``values``), and says whether pairs are made
by class (``by_class``: then other examples of the same class are no true negatives, which
the CLIP loss masks when ``task.same_label_negatives`` is ``auto``).

Random choices (which caption, which recording of the digit, which template) are drawn in
``preprocess`` from torch's global generator, like augmentations: seeded by the run's seed
(and per DataLoader worker by the loader's generator), so they are reproducible and new
every epoch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import datasets
import torch

from mmssl.data.sources import load_data
from mmssl.errors import DataError
from mmssl.recipe import Recipe


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


class Pairing:
    """Both cells of an example's pair, by role. The base pairs the data's own columns (and,
    in evaluation, keeps whichever of them an example has)."""

    by_class = False

    def __init__(self, roles: tuple[str, str]) -> None:
        self.roles = roles

    def values(self, example: dict[str, Any], train: bool) -> dict[str, Any]:
        return {role: example[role] for role in self.roles if role in example}


class ClassPartners(Pairing):
    """``task.pair_with``: each example meets a random example of its class from the partner data."""

    by_class = True

    def __init__(self, roles: tuple[str, str], partner: Any, labels: Sequence[int]) -> None:
        super().__init__(roles)
        self.partner = partner
        self.pairing = ClassPairing(partner.select_columns(["label"])["label"], sorted(set(labels)))

    def values(self, example: dict[str, Any], train: bool) -> dict[str, Any]:
        first, second = self.roles
        partner = self.partner[self.pairing.pick(example["label"])]
        return {first: example[first], second: partner[second]}


class LabelPrompts(Pairing):
    """Text from each example's label name through the prompt templates."""

    by_class = True

    def __init__(self, roles: tuple[str, str], prompt: PromptText) -> None:
        super().__init__(roles)
        self.prompt = prompt

    def values(self, example: dict[str, Any], train: bool) -> dict[str, Any]:
        first, second = self.roles
        return {first: example[first], second: self.prompt(example["label"], train)}


def build_pairing(recipe: Recipe, roles: tuple[str, str], dataset: Any) -> Pairing:
    """The recipe's pairing for ``dataset``: ``pair_with`` data, paired columns, or prompts from labels."""
    cfg = recipe.task
    columns = list(dataset.column_names or [])
    first, second = roles
    if cfg.pair_with is not None:
        if "label" not in columns:
            raise DataError(f"data: pairing by class needs a 'label' column (the data has {columns})")
        partner = load_data(cfg.pair_with, required=(second, "label"))
        return ClassPartners(roles, partner, dataset.select_columns(["label"])["label"])
    if second in columns:
        return Pairing(roles)
    if second == "text" and "label" in columns:
        names = cfg.class_names or class_names(dataset)
        if names is None:
            raise DataError("task.class_names: the labels have no names; list them to make prompts")
        return LabelPrompts(roles, PromptText(names, cfg.prompts))
    raise DataError(
        f"data: no {second!r} column to pair with {first!r} (the data has {columns}); "
        f"map one with data.columns.{second}, or set task.pair_with"
        + (", or give a label column for prompts" if second == "text" else "")
    )


def pairing_texts(recipe: Recipe) -> Iterator[Any]:
    """What a pairing's text side reads, to train a tokenizer on: the cells of the caption
    column (of ``data``, else of ``task.pair_with``; a text or a list of texts each), or every
    prompt template filled with every class name."""
    cfg = recipe.task
    data = load_data(recipe.data)
    sources = [data] + ([load_data(cfg.pair_with)] if cfg.pair_with is not None else [])
    for source in sources:
        if "text" in source.column_names:
            yield from source.select_columns(["text"])["text"]
            return
    names = cfg.class_names or class_names(data)
    if names is None:
        raise DataError(
            "data.text.tokenizer: empty, and there are no captions (a 'text' column) nor class "
            "names (task.class_names) to train one on; name a tokenizer or give one of them"
        )
    yield from prompt_texts(names, cfg.prompts)
