"""Evaluate a run directory: every protocol of the ``eval:`` section, at every label
fraction, for the trained backbone and, in the same run on the same splits, its baselines:
the same backbone at random initialisation (linear, kNN), the raw input (``mmssl.eval.raw``;
every protocol) and, for ``finetune``, the same architecture trained on the same labels from
random init (``supervised_from_scratch``: the backbone at the full ``finetune_lr``).

Data: the pretraining source by default (its split for training, ``eval.test_split`` for
test), or ``eval.data``. A seeded, stratified validation split is carved from the training
split for the linear probe's sweep; label subsets are drawn from the rest. Features are
extracted once per model and split and cached under ``RUN_DIR/eval/features``.
Clip runs add (or only run) the ``alignment`` protocol: ``mmssl.eval.alignment`` on the
test split for both models, under ``alignment`` in the same report.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmssl.data.eval_split import eval_data_configs
from mmssl.data.sources import load_data
from mmssl.eval.alignment import evaluate_alignment
from mmssl.eval.features import Features, cached_features, extract_features
from mmssl.eval.finetune import finetune
from mmssl.eval.knn import knn_classify
from mmssl.eval.labels import encode_labels
from mmssl.eval.linear import linear_probe
from mmssl.eval.raw import raw_input_features
from mmssl.eval.report import write_report
from mmssl.eval.subsets import label_subsets, train_val_split
from mmssl.recipe import DataConfig, EvalConfig, Recipe, recipe_from_dict, recipe_to_dict
from mmssl.tasks.base import PretextTask, build_task
from mmssl.tasks.clip import ClipTask
from mmssl.train.run_lock import locked_run
from mmssl.weights import find_checkpoint, load_run


def resolve_eval_config(recipe: Recipe, overrides: list[str] = (), source: str = "") -> EvalConfig:
    """The recipe's ``eval:`` section (defaults if absent) with ``key=value`` overrides."""
    tree = recipe_to_dict(recipe)
    tree["eval"] = tree.get("eval") or {}
    return recipe_from_dict(tree, [f"eval.{o}" for o in overrides], source).eval


def _load_split(data: DataConfig, task: PretextTask, label: str, limit: int | None, seed: int) -> Any:
    ds = load_data(data, required=tuple(task.required_columns) + (label,))
    if limit is not None and limit < len(ds):
        ds = ds.shuffle(seed=seed).select(range(limit))
    return ds


def random_init_task(recipe: Recipe) -> PretextTask:
    """The same architecture as the run, freshly initialised with the recipe's seed."""
    torch.manual_seed(recipe.seed)
    return build_task(recipe).eval()


def score_features(
    protocol: str, train: Features, test: Features, data: dict[str, Any], cfg: EvalConfig, seed: int
) -> dict[str, Any]:
    """The ``linear`` or ``knn`` protocol on fixed features, at every label fraction."""
    results = {}
    for fraction, rows in data["subsets"].items():
        if protocol == "linear":
            probe = linear_probe(
                train.rows(rows), train.rows(data["val_rows"]), (test.x, test.y), data["num_classes"],
                cfg.linear_lrs, cfg.linear_weight_decays, cfg.linear_epochs, seed, scale_from=train.x,
            )
            scores = dataclasses.asdict(probe)
        else:
            x, y = train.rows(rows)
            scores = knn_classify(x, y, test.x, test.y, data["num_classes"], cfg.knn_k, cfg.knn_temperature)
        results[str(fraction)] = {**scores, "num_labels": len(rows)}
    return results


def finetune_fractions(
    task: PretextTask, name: str, data: dict[str, Any], cfg: EvalConfig, seed: int
) -> dict[str, Any]:
    """The ``finetune`` protocol (a copy of ``task`` and a head) at every label fraction."""
    label, policy = cfg.label_column, data["policy"]
    return {
        str(fraction): {
            **finetune(task, data["train"].select(rows), data["test"], label, data["num_classes"], cfg,
                       policy, seed, desc=f"{name} finetune {fraction:g}"),
            "num_labels": len(rows),
        }
        for fraction, rows in data["subsets"].items()
    }


def evaluate_task(
    task: PretextTask,
    name: str,
    data: dict[str, Any],
    cfg: EvalConfig,
    recipe: Recipe,
    cache_dir: Path,
    fingerprint: dict[str, Any],
    protocols: list[str] | None = None,
) -> tuple[dict[str, Any], Features]:
    """``protocols`` (default: the config's) at every label fraction for one model; also
    returns its test features."""
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
    results = {
        protocol: finetune_fractions(task, name, data, cfg, seed) if protocol == "finetune"
        else score_features(protocol, train, test, data, cfg, seed)
        for protocol in (cfg.protocols if protocols is None else protocols)
    }
    return results, test


def raw_input_results(
    task: PretextTask, recipe: Recipe, data: dict[str, Any], cfg: EvalConfig, data_cfg: DataConfig
) -> dict[str, Any] | None:
    """Every protocol on the raw-input features (``mmssl.eval.raw``), ``None`` where the task
    has no single modality with a raw-input baseline. ``finetune`` has no network to train
    here, so its raw-input row is the linear probe on the raw input."""
    if len(task.modalities) != 1:
        return None
    features = raw_input_features(
        task.modalities[0], task.required_columns[0], data_cfg, data["train"], data["test"],
        cfg.label_column, data["policy"],
    )
    if features is None:
        return None
    scored: dict[str, Any] = {}
    for protocol in cfg.protocols:
        probe = "linear" if protocol == "finetune" else protocol
        if probe not in scored:
            scored[probe] = score_features(probe, *features, data, cfg, recipe.seed)
        scored[protocol] = scored[probe]
    return {protocol: scored[protocol] for protocol in cfg.protocols}


@locked_run("eval")
def evaluate_run(
    run_dir: str | Path,
    cfg: EvalConfig | None = None,
    checkpoint: str | Path | None = None,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Evaluate a run directory; writes ``RUN_DIR/eval/report.{json,md}`` and plots.

    The ``alignment`` protocol (clip runs) adds retrieval R@1/5/10 both ways and zero-shot
    accuracy on the test split, for the trained and the random-init model alike.
    """
    started = time.time()
    run_dir = Path(run_dir)
    recipe, task = load_run(run_dir, checkpoint)
    cfg = cfg or recipe.eval or EvalConfig()
    ckpt = find_checkpoint(checkpoint or run_dir)
    models = {"pretrained": task, "random_init": random_init_task(recipe)}
    probes = [p for p in cfg.protocols if p != "alignment"]
    report: dict[str, Any] = {"run_dir": str(run_dir), "checkpoint": str(ckpt), "task": recipe.task.name}
    if probes:
        report.update(_probe_report(run_dir, recipe, models, dataclasses.replace(cfg, protocols=probes), ckpt))
    else:
        report["results"] = {name: {} for name in models}
    report["settings"] = _settings(cfg)
    if "alignment" in cfg.protocols:
        if not isinstance(task, ClipTask):
            raise ValueError(f"eval.protocols: alignment scores clip runs; {run_dir} is a {recipe.task.name!r} run")
        report["alignment"] = {
            name: evaluate_alignment(model.cpu(), cfg.test_split, cfg.max_test_examples, cfg.batch_size)
            for name, model in models.items()
        }
    report["seconds"] = round(time.time() - started, 1)
    return report, write_report(report, run_dir / "eval", report.pop("test_features", {}))


def _settings(cfg: EvalConfig) -> dict[str, Any]:
    return dataclasses.asdict(dataclasses.replace(cfg, data=None))


def _probe_report(
    run_dir: Path, recipe: Recipe, models: dict[str, PretextTask], cfg: EvalConfig, ckpt: Path
) -> dict[str, Any]:
    """The probes (linear, kNN, fine-tune) of every model at every label fraction."""
    task = models["pretrained"]
    device = torch.device("cuda" if torch.cuda.is_available() and not recipe.train.cpu else "cpu")
    train_cfg, test_cfg = eval_data_configs(recipe, cfg)
    label = cfg.label_column
    train = _load_split(train_cfg, task, label, cfg.max_train_examples, recipe.seed)
    test = _load_split(test_cfg, task, label, cfg.max_test_examples, recipe.seed)
    encoded = encode_labels(train, test, label, train_cfg.on_bad_example)
    train, test, num_classes = encoded.train, encoded.test, encoded.num_classes
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
    feature_protocols = [p for p in cfg.protocols if p != "finetune"]
    for name, model in models.items():
        protocols = cfg.protocols if name == "pretrained" else feature_protocols
        results[name], feats = evaluate_task(
            model.to(device), name, data, cfg, recipe, eval_dir / "features", fingerprint, protocols
        )
        test_features[name] = (feats.x, feats.y)
        skipped = feats.skipped
    if "finetune" in cfg.protocols:
        scratch = dataclasses.replace(cfg, finetune_backbone_lr_scale=1.0)
        results["supervised_from_scratch"] = {
            "finetune": finetune_fractions(models["random_init"], "supervised from scratch", data, scratch, recipe.seed)
        }
    raw = raw_input_results(task, recipe, data, cfg, train_cfg)
    if raw is not None:
        results["raw_input"] = raw
    return {
        "num_classes": num_classes,
        "sizes": {"train": len(fit_rows), "val": len(val_rows), "test": len(test)},
        "skipped_test_examples": skipped,
        "skipped_label_rows": encoded.skipped,
        "data": {"train": dataclasses.asdict(train_cfg), "test_split": cfg.test_split},
        "settings": _settings(cfg),
        "results": results,
        "test_features": test_features,
    }
