"""Data sources: from a recipe's ``data:`` section to a ``datasets`` split.

Every source returns a ``datasets.Dataset`` (or ``IterableDataset`` when streaming) whose
columns are renamed to the roles the tasks expect (``image``, ``text``, ``audio``, ``label``)
and whose media columns are left undecoded, so that a bad file fails in ``preprocess``
where the bad-example policy can count it, not deep inside the dataset iterator.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import datasets

from mmssl.errors import DataError
from mmssl.recipe import DataConfig
from mmssl.registry import DATA_SOURCES

Dataset = datasets.Dataset | datasets.IterableDataset


@DATA_SOURCES.register("hub")
def hub_source(cfg: DataConfig) -> Dataset:
    """A dataset id on the Hugging Face Hub (``path``), with optional config ``name``."""
    if not cfg.path:
        raise DataError("data.path: the Hub dataset id is required for source 'hub'")
    return datasets.load_dataset(
        cfg.path, cfg.name, data_files=cfg.data_files, split=cfg.split, streaming=cfg.streaming
    )


@contextmanager
def _quiet_progress() -> Iterator[None]:
    """No progress bars while ``datasets`` reads local files: from 16 files on it shows a
    "Downloading data" bar although nothing is downloaded."""
    was_disabled = datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def _builder_source(builder: str):
    def load(cfg: DataConfig) -> Dataset:
        if not cfg.data_files and not cfg.path:
            raise DataError(f"data: source {builder!r} needs data_files or path")
        files = cfg.data_files
        for split, pattern in (files or {}).items():
            patterns = pattern if isinstance(pattern, list) else [pattern]
            for item in patterns:
                if not any(c in str(item) for c in "*?[") and not Path(item).exists():
                    raise DataError(f"data.data_files.{split}: no such file {item!r}")
        if cfg.path and not Path(cfg.path).exists():
            raise DataError(f"data.path: no such directory {cfg.path!r}")
        kwargs: dict[str, Any] = {"data_files": files} if files else {"data_dir": cfg.path}
        try:
            with _quiet_progress():
                return datasets.load_dataset(
                    builder, split=cfg.split, streaming=cfg.streaming, **kwargs
                )
        except ValueError as err:
            if "split" in str(err).lower() or "Unknown split" in str(err):
                raise DataError(f"data.split: {err}") from err
            raise

    load.__doc__ = f"Local files read with the `datasets` {builder!r} builder."
    return load


for _builder in ("parquet", "imagefolder", "audiofolder", "text", "csv", "json"):
    DATA_SOURCES.register(_builder)(_builder_source(_builder))


@DATA_SOURCES.register("sklearn_digits")
def sklearn_digits_source(cfg: DataConfig) -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images): offline, for the quickstart."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = [
        Image.fromarray((img * (255.0 / 16.0)).astype(np.uint8), mode="L") for img in digits.images
    ]
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=[str(i) for i in range(10)])}
    )
    full = datasets.Dataset.from_dict(
        {"image": images, "label": digits.target.tolist()}, features=features
    )
    parts = full.train_test_split(test_size=0.2, seed=0, stratify_by_column="label")
    if cfg.split not in parts:
        raise DataError(f"data.split: sklearn_digits has splits 'train' and 'test', not {cfg.split!r}")
    split = parts[cfg.split]
    return split.to_iterable_dataset() if cfg.streaming else split


_MEDIA = (datasets.Image, datasets.Audio)


def _undecode(ds: Dataset) -> Dataset:
    features = ds.features
    if features is None:
        return ds
    for name, feature in features.items():
        if isinstance(feature, _MEDIA) and feature.decode:
            ds = ds.cast_column(name, type(feature)(**{**_feature_kwargs(feature), "decode": False}))
    return ds


def _feature_kwargs(feature: Any) -> dict[str, Any]:
    if isinstance(feature, datasets.Audio):
        return {"sampling_rate": feature.sampling_rate}
    return {}


def load_data(
    cfg: DataConfig, required: tuple[str, ...] = (), keep: tuple[str, ...] | None = None
) -> Dataset:
    """Load the split the recipe names, rename columns to roles, check the roles exist.

    With ``keep``, only those columns (of the ones the data has) are kept: pretraining never
    reads a label column, so a string or missing label cannot break its batches.
    """
    from mmssl.registry import RegistryError

    try:
        source = DATA_SOURCES.get(cfg.source).obj
    except RegistryError as err:
        raise DataError(f"data.source: {err}") from err
    ds = source(cfg)
    if isinstance(ds, datasets.DatasetDict):
        raise DataError(f"data.split: pick one of {list(ds)}")
    columns = list(ds.column_names or ds.features or [])
    renames = {}
    for role, column in cfg.columns.items():
        if column not in columns:
            raise DataError(f"data.columns.{role}: no column {column!r} (the data has {columns})")
        if column != role:
            renames[column] = role
    if renames:
        ds = ds.rename_columns(renames)
        columns = [renames.get(c, c) for c in columns]
    missing = [role for role in required if role not in columns]
    if missing:
        raise DataError(
            f"data: the task needs column(s) {missing} but the data has {columns}; "
            f"map them with data.columns, e.g. data.columns.{missing[0]}=<your column>"
        )
    if keep is not None and columns:
        ds = ds.select_columns([c for c in columns if c in keep])
    if cfg.max_examples is not None:
        ds = ds.take(cfg.max_examples) if cfg.streaming else ds.select(
            range(min(cfg.max_examples, len(ds)))
        )
    return _undecode(ds)
