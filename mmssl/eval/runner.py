"""Evaluate a run directory: every protocol of the ``eval:`` section, at every label
fraction, for the trained backbone and for the same backbone at random initialisation.

Data: the pretraining source by default (its split for training, ``eval.test_split`` for
test), or ``eval.data``. A seeded, stratified validation split is carved from the training
split for the linear probe's sweep; label subsets are drawn from the rest. Features are
extracted once per model and split and cached under ``RUN_DIR/eval/features``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from mmssl.data.sources import DataError, load_data
from mmssl.eval.features import Features, cached_features, extract_features
from mmssl.eval.finetune import finetune
from mmssl.eval.knn import knn_classify
from mmssl.eval.linear import linear_probe
from mmssl.eval.report import write_report
from mmssl.eval.subsets import label_subsets, train_val_split
from mmssl.recipe import DataConfig, EvalConfig, Recipe, recipe_from_dict, recipe_to_dict
from mmssl.runs import find_checkpoint, load_run
from mmssl.tasks.base import PretextTask, build_task


def resolve_eval_config(recipe: Recipe, overrides: list[str] = (), source: str = "") -> EvalConfig:
    """The recipe's ``eval:`` section (defaults if absent) with ``key=value`` overrides."""
    tree = recipe_to_dict(recipe)
    tree["eval"] = tree.get("eval") or {}
    return recipe_from_dict(tree, [f"eval.{o}" for o in overrides], source).eval


def data_dir_config(base: DataConfig, directory: str | Path, splits: tuple[str, ...]) -> DataConfig:
    """``base`` reading ``<directory>/<split>.parquet`` for each split (``mmssl eval --data``)."""
    directory = Path(directory)
    files = {split: str(directory / f"{split}.parquet") for split in splits}
    missing = [f for f in files.values() if not Path(f).is_file()]
    if missing:
        raise DataError(f"--data {directory}: no {', '.join(missing)} (expected <split>.parquet files)")
    return dataclasses.replace(base, source="parquet", path=None, name=None, data_files=files)


def eval_data_configs(recipe: Recipe, cfg: EvalConfig) -> tuple[DataConfig, DataConfig]:
    """Data sections for the train and test splits of the evaluation."""
    base = cfg.data or dataclasses.replace(recipe.data, max_examples=None)
    base = dataclasses.replace(base, streaming=False)
    if base.data_files and cfg.test_split not in base.data_files:
        where = "eval.data" if cfg.data else "data"
        raise DataError(
            f"{where}.data_files has no {cfg.test_split!r} split (eval.test_split): add "
            f"{where}.data_files.{cfg.test_split}=<file>, or point eval.data at labelled data"
        )
    return base, dataclasses.replace(base, split=cfg.test_split)


def _load_split(data: DataConfig, task: PretextTask, label: str, limit: int | None, seed: int) -> Any:
    ds = load_data(data, required=tuple(task.required_columns) + (label,))
    if limit is not None and limit < len(ds):
        ds = ds.shuffle(seed=seed).select(range(limit))
    return ds


def _encode_labels(train: Any, test: Any, label: str) -> tuple[Any, Any, int]:
    """Integer labels in both splits (string labels become a shared ClassLabel)."""
    feature = train.features[label]
    if isinstance(feature, datasets.Value) and feature.dtype == "string":
        names = sorted(set(train[label]) | set(test[label]))
        feature = datasets.ClassLabel(names=names)
        train, test = train.cast_column(label, feature), test.cast_column(label, feature)
    if isinstance(feature, datasets.ClassLabel):
        return train, test, feature.num_classes
    values = np.concatenate([np.asarray(train[label]), np.asarray(test[label])])
    if not np.issubdtype(values.dtype, np.integer) or values.min() < 0:
        raise DataError(f"eval.label_column {label!r}: expected class ids >= 0 or class names")
    return train, test, int(values.max()) + 1


def random_init_task(recipe: Recipe) -> PretextTask:
    """The same architecture as the run, freshly initialised with the recipe's seed."""
    torch.manual_seed(recipe.seed)
    return build_task(recipe).eval()


def evaluate_task(
    task: PretextTask,
    name: str,
    data: dict[str, Any],
    cfg: EvalConfig,
    recipe: Recipe,
    cache_dir: Path,
    fingerprint: dict[str, Any],
) -> tuple[dict[str, Any], Features]:
    """Every protocol at every label fraction for one model; also returns its test features."""
    label, policy, seed = cfg.label_column, data["policy"], recipe.seed

    def features(split: str) -> Features:
        key = {**fingerprint, "model": name, "split": split, "pooling": cfg.pooling}
        return cached_features(
            cache_dir / f"{name}_{split}.safetensors",
            key,
            lambda: extract_features(
                task, data[split], label, cfg.pooling, cfg.batch_size, policy,
                recipe.data.num_workers, desc=f"{name} {split} features",
            ),
        )

    train, test = features("train"), features("test")
    val_rows, subsets = data["val_rows"], data["subsets"]
    results: dict[str, Any] = {}
    for protocol in cfg.protocols:
        results[protocol] = {}
        for fraction, rows in subsets.items():
            if protocol == "linear":
                probe = linear_probe(
                    train.rows(rows), train.rows(val_rows), (test.x, test.y), data["num_classes"],
                    cfg.linear_lrs, cfg.linear_weight_decays, cfg.linear_epochs, seed,
                )
                scores = dataclasses.asdict(probe)
            elif protocol == "knn":
                x, y = train.rows(rows)
                scores = knn_classify(x, y, test.x, test.y, data["num_classes"], cfg.knn_k, cfg.knn_temperature)
            else:
                scores = finetune(
                    task, data["train"].select(rows), data["test"], label, data["num_classes"], cfg,
                    policy, seed, desc=f"{name} finetune {fraction:g}",
                )
            results[protocol][str(fraction)] = {**scores, "num_labels": len(rows)}
    return results, test


def evaluate_run(
    run_dir: str | Path,
    cfg: EvalConfig | None = None,
    checkpoint: str | Path | None = None,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Evaluate a run directory; writes ``RUN_DIR/eval/report.{json,md}`` and plots."""
    started = time.time()
    run_dir = Path(run_dir)
    recipe, task = load_run(run_dir, checkpoint)
    cfg = cfg or recipe.eval or EvalConfig()
    ckpt = find_checkpoint(checkpoint or run_dir)
    device = torch.device("cuda" if torch.cuda.is_available() and not recipe.train.cpu else "cpu")
    train_cfg, test_cfg = eval_data_configs(recipe, cfg)
    label = cfg.label_column
    train = _load_split(train_cfg, task, label, cfg.max_train_examples, recipe.seed)
    test = _load_split(test_cfg, task, label, cfg.max_test_examples, recipe.seed)
    train, test, num_classes = _encode_labels(train, test, label)
    labels = np.asarray(train[label])
    fit_rows, val_rows = train_val_split(labels, cfg.val_fraction, recipe.seed)
    subsets = {f: fit_rows[s] for f, s in label_subsets(labels[fit_rows], cfg.label_fractions, recipe.seed).items()}
    data = {
        "train": train, "test": test, "num_classes": num_classes, "policy": train_cfg.on_bad_example,
        "val_rows": val_rows, "subsets": subsets,
    }
    fingerprint = {
        "checkpoint": str(ckpt.resolve()), "mtime": os.stat(ckpt).st_mtime_ns, "seed": recipe.seed,
        "train": dataclasses.asdict(train_cfg), "test": dataclasses.asdict(test_cfg),
        "max_train": cfg.max_train_examples, "max_test": cfg.max_test_examples,
    }
    eval_dir = run_dir / "eval"
    results, test_features = {}, {}
    models = {"pretrained": task, "random_init": random_init_task(recipe)}
    for name, model in models.items():
        results[name], feats = evaluate_task(
            model.to(device), name, data, cfg, recipe, eval_dir / "features", fingerprint
        )
        test_features[name] = (feats.x, feats.y)
        skipped = feats.skipped
    report = {
        "run_dir": str(run_dir),
        "checkpoint": str(ckpt),
        "task": recipe.task.name,
        "num_classes": num_classes,
        "sizes": {"train": len(fit_rows), "val": len(val_rows), "test": len(test)},
        "skipped_test_examples": skipped,
        "data": {"train": dataclasses.asdict(train_cfg), "test_split": cfg.test_split},
        "settings": dataclasses.asdict(dataclasses.replace(cfg, data=None)),
        "results": results,
        "seconds": round(time.time() - started, 1),
    }
    return report, write_report(report, eval_dir, test_features)
