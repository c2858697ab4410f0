"""The train and test data of an evaluation, from the recipe's ``data:`` or ``eval.data``.

Here, below the trainer and eval, so that ``mmssl pretrain --dry-run`` can count the eval
splits with the same rules ``mmssl eval`` reads them by.
"""

from __future__ import annotations

import dataclasses

from mmssl.data.sources import HOLDOUT_SOURCES, HOLDOUT_SPLIT
from mmssl.errors import DataError
from mmssl.recipe import DataConfig, EvalConfig, Recipe


def eval_data_configs(recipe: Recipe, cfg: EvalConfig) -> tuple[DataConfig, DataConfig]:
    """Data sections for the train and test splits of the evaluation."""
    base = cfg.data or dataclasses.replace(recipe.data, max_examples=None)
    base = dataclasses.replace(base, streaming=False)
    held_out = base.source in HOLDOUT_SOURCES and base.holdout_fraction and cfg.test_split == HOLDOUT_SPLIT
    if base.data_files and cfg.test_split not in base.data_files and not held_out:
        where = "eval.data" if cfg.data else "data"
        raise DataError(
            f"{where}.data_files has no {cfg.test_split!r} split (eval.test_split): add "
            f"{where}.data_files.{cfg.test_split}=<file>, or point eval.data at labelled data"
        )
    test = dataclasses.replace(base, split=cfg.test_split)
    _refuse_training_data_as_test(base, test, "eval.data" if cfg.data else "data")
    return base, test


def _refuse_training_data_as_test(train: DataConfig, test: DataConfig, where: str) -> None:
    """Scores on the rows the probes fit would measure memory, not what was learned."""
    files = train.data_files or {}
    same_files = train.split in files and files.get(test.split) == files[train.split]
    if test.split == train.split or same_files:
        raise DataError(
            f"eval.test_split: {test.split!r} is the data the probes train on ({where} split "
            f"{train.split!r}), so its scores would not show what was learned: name a held-out "
            f"split (e.g. eval.test_split=test), or point eval.data at labelled data that has one"
        )
