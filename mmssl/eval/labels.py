"""Class ids for evaluation, and what to do with rows whose label is outside the class list.

Real labelled splits carry rows that are not examples of any class: ``-1`` for unlabeled
rows (the `datasets` convention for a missing ``ClassLabel``), an empty or missing name, a
test class the training split never had. Under ``data.on_bad_example: raise`` the first such
row stops the evaluation with its split, row and value; under ``skip`` the rows are left out
and counted in the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np

from mmssl.data.sources import DataError


@dataclass
class EncodedLabels:
    train: Any
    test: Any
    num_classes: int
    skipped: dict[str, int]


def _class_list(train: Any, label: str) -> tuple[Any, list[str] | None, int]:
    """The label feature to cast to (for names), the class names if any, and the class count."""
    feature = train.features[label]
    if isinstance(feature, datasets.ClassLabel):
        return None, feature.names, feature.num_classes
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        names = sorted({name for name in train[label] if isinstance(name, str) and name})
        if not names:
            raise DataError(f"eval.label_column {label!r}: no class name in the training split")
        return datasets.ClassLabel(names=names), names, len(names)
    if isinstance(feature, datasets.Value) and np.issubdtype(np.dtype(feature.dtype), np.integer):
        ids = _ids(train, label, None, is_string=False)
        valid = ids[ids >= 0]
        if valid.size == 0:
            raise DataError(f"eval.label_column {label!r}: no class id >= 0 in the training split")
        return None, None, int(valid.max()) + 1
    raise DataError(f"eval.label_column {label!r}: expected class ids (integers) or class names, got {feature}")


def _ids(split: Any, label: str, names: list[str] | None, is_string: bool) -> np.ndarray:
    """Class id per row, ``-1`` where the row has none in the class list."""
    if not is_string:
        return np.asarray([-1 if value is None else value for value in split[label]], dtype=np.int64)
    lookup = {name: i for i, name in enumerate(names or [])}
    return np.asarray([lookup.get(name, -1) if isinstance(name, str) else -1 for name in split[label]])


def encode_labels(train: Any, test: Any, label: str, policy: str) -> EncodedLabels:
    """Integer class ids in ``[0, num_classes)`` in both splits, by the bad-example policy."""
    cast, names, num_classes = _class_list(train, label)
    is_string = cast is not None
    splits, skipped = {"train": train, "test": test}, {}
    for split_name, split in splits.items():
        ids = _ids(split, label, names, is_string)
        outside = np.flatnonzero((ids < 0) | (ids >= num_classes))
        if outside.size and policy == "raise":
            row = int(outside[0])
            shown = names if names is not None and len(names) <= 20 else f"ids 0..{num_classes - 1}"
            raise DataError(
                f"eval: {split_name} example {row}: label {split[row][label]!r} is not in the class list "
                f"({num_classes} classes: {shown}); {outside.size} such rows (-1 usually marks unlabeled "
                "rows). Set data.on_bad_example=skip to leave them out, or point eval.data at labelled data"
            )
        keep = np.setdiff1d(np.arange(len(split)), outside)
        if outside.size:
            split = split.select(keep)
        if is_string:
            split = split.cast_column(label, cast)
        splits[split_name], skipped[split_name] = split, int(outside.size)
    return EncodedLabels(splits["train"], splits["test"], num_classes, skipped)
