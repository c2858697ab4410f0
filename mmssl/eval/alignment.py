"""Evaluate a CLIP-style run: retrieval both ways (R@1/5/10) and zero-shot classification.

The test data follow the recipe: with ``task.pair_with`` both datasets' test splits are
embedded and matched by class (zero-shot by class prototypes of the other modality); with a
paired dataset each item matches its own partner(s) (an image and its captions); with
prompts the class names become text. The report goes to ``<run>/eval/alignment.json``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from mmssl.data.pairing import class_names, prompt_texts
from mmssl.data.sources import load_data
from mmssl.eval.retrieval import labels_relevance, retrieval_metrics
from mmssl.eval.zero_shot import class_prototypes, prompt_labels, zero_shot_accuracy
from mmssl.progress import progress_bar
from mmssl.tasks.clip import ClipTask
from mmssl.weights import is_dual_encoder, load_dual_encoder, load_run


@torch.no_grad()
def embed_values(task: ClipTask, modality: str, values: list[Any], batch_size: int = 256) -> torch.Tensor:
    """Normalised embeddings of raw cells (images, texts, recordings), without augmentation."""
    tower = task.towers[modality]
    out = []
    for start in progress_bar(range(0, len(values), batch_size), desc=f"{modality} embeddings"):
        items = [tower.preprocess(v, train=False) for v in values[start : start + batch_size]]
        out.append(task.encode(modality, tower.collate(items)))
    return torch.cat(out)


def _split(cfg: Any, split: str, limit: int | None) -> Any:
    """The split, or a seeded random subset of ``limit`` examples (data sets are often sorted by class)."""
    data = load_data(dataclasses.replace(cfg, split=split, max_examples=None))
    if limit is not None and limit < len(data):
        data = data.shuffle(seed=0).select(range(limit))
    return data


def evaluate_alignment(
    task: ClipTask, split: str = "test", max_examples: int | None = None, batch_size: int = 256
) -> dict[str, Any]:
    """Retrieval and zero-shot metrics of ``task`` on the recipe's ``split`` data."""
    task.eval()
    recipe, cfg = task.recipe, task.cfg
    (m_a, m_b), (r_a, r_b) = task.modalities, task.roles
    data = _split(recipe.data, split, max_examples)
    report: dict[str, Any] = {"split": split, "modalities": [m_a, m_b]}
    if cfg.pair_with is not None:
        partner = _split(cfg.pair_with, split, max_examples)
        a = embed_values(task, m_a, data[r_a], batch_size)
        b = embed_values(task, m_b, partner[r_b], batch_size)
        la, lb = torch.tensor(data["label"]), torch.tensor(partner["label"])
        report["pairing"] = "classes"
        report["retrieval"] = retrieval_metrics(a, b, labels_relevance(la, lb), (m_a, m_b))
        n = int(max(la.max(), lb.max())) + 1
        report["zero_shot"] = {
            f"{m_a}_by_{m_b}_prototypes": zero_shot_accuracy(a, la, class_prototypes(b, lb, n)),
            f"{m_b}_by_{m_a}_prototypes": zero_shot_accuracy(b, lb, class_prototypes(a, la, n)),
        }
        report["num_examples"] = {m_a: len(a), m_b: len(b)}
    elif r_b in data.column_names:
        a = embed_values(task, m_a, data[r_a], batch_size)
        cells = data[r_b]
        groups = [len(c) if isinstance(c, list) else 1 for c in cells]
        flat = [x for c in cells for x in (c if isinstance(c, list) else [c])]
        b = embed_values(task, m_b, flat, batch_size)
        owner = torch.arange(len(cells)).repeat_interleave(torch.tensor(groups))
        report["pairing"] = "paired"
        report["retrieval"] = retrieval_metrics(a, b, labels_relevance(torch.arange(len(cells)), owner), (m_a, m_b))
        report["num_examples"] = {m_a: len(a), m_b: len(b)}
    else:
        names = cfg.class_names or class_names(data)
        if names is None:
            raise ValueError("task.class_names: the labels have no names to make prompts from")
        a = embed_values(task, m_a, data[r_a], batch_size)
        la = torch.tensor(data["label"])
        texts = embed_values(task, "text", prompt_texts(names, cfg.prompts), batch_size)
        prototypes = class_prototypes(texts, prompt_labels(len(names), len(cfg.prompts)), len(names))
        report["pairing"] = "prompts"
        report["zero_shot"] = {"prompts": zero_shot_accuracy(a, la, prototypes)}
        report["retrieval"] = retrieval_metrics(
            a, prototypes, labels_relevance(la, torch.arange(len(names))), (m_a, "prompt")
        )
        report["num_examples"] = {m_a: len(a), "classes": len(names)}
    return report


def evaluate_run(
    run_dir: str | Path, split: str = "test", max_examples: int | None = None, batch_size: int = 256
) -> tuple[dict[str, Any], Path]:
    """Load a run (or a dual-encoder export), evaluate it, and write ``<dir>/eval/alignment.json``."""
    task = load_dual_encoder(run_dir) if is_dual_encoder(run_dir) else load_run(run_dir)[1]
    if not isinstance(task, ClipTask):
        raise ValueError(f"{run_dir}: not a clip run (task {task.recipe.task.name!r})")
    report = evaluate_alignment(task, split, max_examples, batch_size)
    out = Path(run_dir) / "eval" / "alignment.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return report, out
