"""Data sources: from a recipe's ``data:`` section to a ``datasets`` split.

Every source returns a ``datasets.Dataset`` (or ``IterableDataset`` when streaming) whose
columns are renamed to the roles the tasks expect (``image``, ``text``, ``audio``, ``label``)
and whose media columns are left undecoded, so that a bad file fails in ``preprocess``
where the bad-example policy can count it, not deep inside the dataset iterator.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq

from mmssl.errors import DataError
from mmssl.recipe import DataConfig
from mmssl.registry import DATA_SOURCES, RegistryError

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


def _builder_kwargs(builder: str, cfg: DataConfig) -> dict[str, Any]:
    """``data_files`` (only the split asked for: another split's files, even with other
    columns, are never read) or ``data_dir``, checked to exist."""
    if not cfg.data_files and not cfg.path:
        raise DataError(f"data: source {builder!r} needs data_files or path")
    files = cfg.data_files
    for split, pattern in (files or {}).items():
        patterns = pattern if isinstance(pattern, list) else [pattern]
        for item in patterns:
            if not any(c in str(item) for c in "*?[") and not Path(item).exists():
                raise DataError(f"data.data_files.{split}: no such file {item!r}")
    if files:
        return {"data_files": {cfg.split: files[cfg.split]} if cfg.split in files else files}
    if not Path(cfg.path).exists():
        raise DataError(f"data.path: no such directory {cfg.path!r}")
    if not Path(cfg.path).is_dir():
        raise DataError(
            f"data.path: {cfg.path!r} is a file, but source {builder!r} reads a folder: point "
            f"data.path at the folder, or name the file with data.data_files.{cfg.split}={cfg.path}"
        )
    return {"data_dir": cfg.path}


def _generation_error(err: Exception, builder: str, cfg: DataConfig, kwargs: dict[str, Any]) -> DataError:
    """One line for ``datasets``' DatasetGenerationError: what was read, the cause, the fix."""
    cause = err.__cause__ or err.__context__ or err
    where = kwargs.get("data_files", {}).get(cfg.split) or kwargs.get("data_dir") or kwargs
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    if type(cause).__name__ == "SchemaInferenceError":
        return DataError(f"data: the {builder} data {where} has no examples (an empty file?): "
                         "remove the empty file or point data at files with examples")
    if type(cause).__name__ == "CastError":
        why = str(cause).rsplit("because", 1)[-1].strip() if "because" in str(cause) else first
        return DataError(f"data: the {builder} files {where} do not all have the same columns "
                         f"({why}): give files with other columns their own split in "
                         "data.data_files, or make the columns match")
    return DataError(f"data: cannot read the {builder} data {where}: {type(cause).__name__}: {first}")


#: sources that get a held-out ``test`` split when their files have none
HOLDOUT_SOURCES = ("imagefolder", "audiofolder", "text")
HOLDOUT_SPLIT = "test"


def _with_holdout(builder: str, cfg: DataConfig, kwargs: dict[str, Any]) -> Dataset | None:
    """``train`` or ``test`` of a folder whose files give no ``test`` split: a seeded
    ``holdout_fraction`` of the rows (stratified by ``label`` when it is a class label)
    becomes ``test`` and is left out of ``train``, so pretraining never sees what the
    evaluation scores. ``None`` when there is nothing to hold out."""
    if not cfg.holdout_fraction or cfg.split not in ("train", HOLDOUT_SPLIT):
        return None
    if cfg.data_files and HOLDOUT_SPLIT in cfg.data_files:
        return None
    parts = datasets.load_dataset(builder, **kwargs)
    if HOLDOUT_SPLIT in parts or "train" not in parts or len(parts["train"]) < 2:
        return None
    train = parts["train"]
    split = {"test_size": cfg.holdout_fraction, "seed": cfg.holdout_seed}
    try:
        stratified = isinstance(train.features.get("label"), datasets.ClassLabel)
        halves = train.train_test_split(**split, stratify_by_column="label" if stratified else None)
    except ValueError:  # a class too small to stratify: a plain seeded split
        halves = train.train_test_split(**split)
    part = halves["train" if cfg.split == "train" else "test"]
    return part.to_iterable_dataset() if cfg.streaming else part


def _builder_source(builder: str):
    def load(cfg: DataConfig) -> Dataset:
        kwargs = _builder_kwargs(builder, cfg)
        try:
            with _quiet_progress():
                held = _with_holdout(builder, cfg, kwargs) if builder in HOLDOUT_SOURCES else None
                if held is not None:
                    return held
                return datasets.load_dataset(
                    builder, split=cfg.split, streaming=cfg.streaming, **kwargs
                )
        except datasets.exceptions.DatasetGenerationError as err:
            raise _generation_error(err, builder, cfg, kwargs) from err
        except ValueError as err:
            if "split" in str(err).lower() or "Unknown split" in str(err):
                raise DataError(f"data.split: {err}") from err
            raise

    load.__doc__ = f"Local files read with the `datasets` {builder!r} builder."
    return load


@dataclass
class RowLocator:
    """Maps a dataset index of a local parquet source to ``FILE row N`` (for bad examples)."""

    files: list[str]
    starts: list[int]

    def __call__(self, index: int) -> str:
        i = bisect.bisect_right(self.starts, index) - 1
        return f"{self.files[i]} row {index - self.starts[i]}"


def row_locator(cfg: DataConfig) -> RowLocator | None:
    """The parquet file and row of each index of ``load_data(cfg)`` (before any shuffle),
    in the order ``datasets`` concatenates the split's files; None for other sources."""
    if cfg.source != "parquet" or cfg.streaming:
        return None
    kwargs = _builder_kwargs("parquet", cfg)
    files = [str(f) for f in datasets.load_dataset_builder("parquet", **kwargs).config.data_files[cfg.split]]
    counts = [pq.ParquetFile(f).metadata.num_rows for f in files]
    return RowLocator(files, list(itertools.accumulate(counts, initial=0))[:-1])


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
