"""Online monitor: watch the representation learn while pretraining runs.

Every ``eval.monitor_every`` optimizer steps the loop calls the monitor with the task; it
embeds a small labelled set (``eval.monitor_examples`` rows of the evaluation's training
split, never its test split) with the task's own ``preprocess(train=False)``,
``collate_eval`` and ``embed``, and returns metrics the loop logs with the step:

- ``monitor/knn_top1``: weighted kNN (the eval protocol's ``k`` and temperature) of a
  stratified 20% of the set against the other 80%;
- ``monitor/rankme``: the effective rank of the embeddings (RankMe, Garrido et al., 2023):
  the exponential of the entropy of their normalised singular values, from 1 (collapse)
  to the embedding width;
- ``monitor/feature_std``: the mean per-dimension standard deviation of the L2-normalised
  embeddings times ``sqrt(dim)``: about 1 when they spread over the sphere, 0 when they
  collapse to one point. ``monitor/collapse`` is 1 (and an alarm is printed) when it falls
  below ``COLLAPSE_DROP`` of the run's first reading, or below ``COLLAPSE_STD`` (a near-constant
  embedding, which a run that collapses before its first reading shows). A relative rule,
  because mean-pooled transformer features sit in a narrow cone from the start (the
  quickstart's ViT reads 0.073 at random init) without having collapsed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mmssl.data.sources import load_data
from mmssl.eval.features import extract_features
from mmssl.eval.knn import knn_classify
from mmssl.eval.labels import encode_labels
from mmssl.eval.subsets import train_val_split
from mmssl.recipe import EvalConfig, Recipe
from mmssl.tasks.base import PretextTask

COLLAPSE_STD = 0.01
COLLAPSE_DROP = 0.1
QUERY_FRACTION = 0.2


def rankme(x: torch.Tensor, eps: float = 1e-7) -> float:
    """Effective rank: ``exp(entropy(s / sum(s)))`` of the singular values ``s`` of ``x``."""
    s = torch.linalg.svdvals(x.double())
    p = s / s.sum().clamp(min=eps) + eps
    return float(torch.exp(-(p * p.log()).sum()))


def feature_std(x: torch.Tensor) -> float:
    """Mean per-dimension std of the L2-normalised rows, times ``sqrt(dim)`` (1: spread, 0: collapse)."""
    normed = F.normalize(x.double(), dim=1)
    return float(normed.std(dim=0, unbiased=False).mean() * x.shape[1] ** 0.5)


def representation_health(x: torch.Tensor, first_std: float | None = None) -> dict[str, float]:
    """RankMe, the normalised per-dimension std and the collapse flag of embeddings ``x``.

    ``first_std`` is the run's first ``feature_std`` reading, the scale the flag is relative to.
    """
    std = feature_std(x)
    collapsed = std < COLLAPSE_STD or (first_std is not None and std < COLLAPSE_DROP * first_std)
    return {"monitor/rankme": rankme(x), "monitor/feature_std": std, "monitor/collapse": float(collapsed)}


@dataclass
class OnlineMonitor:
    """Called by the training loop after every optimizer step; does work every ``every`` steps."""

    data: Any  # labelled rows, labels encoded as 0..C-1
    cfg: EvalConfig
    every: int
    num_classes: int
    query_rows: np.ndarray
    bank_rows: np.ndarray
    policy: str = "raise"
    first_std: float | None = None

    def __call__(self, task: PretextTask, step: int, total_steps: int) -> dict[str, float]:
        if step % self.every and step != total_steps:
            return {}
        feats = extract_features(task, self.data, self.cfg.label_column, self.cfg.pooling,
                                 self.cfg.batch_size, self.policy, desc="monitor")
        bank_x, bank_y = feats.rows(self.bank_rows)
        query_x, query_y = feats.rows(self.query_rows)
        knn = knn_classify(bank_x, bank_y, query_x, query_y, self.num_classes, self.cfg.knn_k,
                           self.cfg.knn_temperature)
        metrics = {"monitor/knn_top1": knn["top1"], **representation_health(feats.x, self.first_std)}
        if self.first_std is None:
            self.first_std = metrics["monitor/feature_std"]
        if metrics["monitor/collapse"]:
            print(f"monitor: the representation is collapsing at step {step} (per-dimension std "
                  f"{metrics['monitor/feature_std']:.3f}, first reading {self.first_std:.3f}, "
                  f"effective rank {metrics['monitor/rankme']:.1f})", flush=True)
        return metrics


def build_monitor(recipe: Recipe) -> OnlineMonitor | None:
    """The recipe's monitor, or ``None`` when ``eval.monitor_every`` is 0 or unset.

    The set is a seeded sample of the evaluation's training split (``eval.data`` or the
    pretraining data), loaded here so that a missing label column fails before training.
    """
    cfg = recipe.eval
    if cfg is None or not cfg.monitor_every:
        return None
    data_cfg = dataclasses.replace(cfg.data or recipe.data, max_examples=None, streaming=False)
    data = load_data(data_cfg, required=(cfg.label_column,))
    if cfg.monitor_examples < len(data):
        data = data.shuffle(seed=recipe.seed).select(range(cfg.monitor_examples))
    encoded = encode_labels(data, data, cfg.label_column, data_cfg.on_bad_example)
    bank, query = train_val_split(np.asarray(encoded.train[cfg.label_column]), QUERY_FRACTION, recipe.seed)
    return OnlineMonitor(encoded.train, cfg, cfg.monitor_every, encoded.num_classes, query, bank,
                         data_cfg.on_bad_example)


def read_monitor(metrics_file: Path) -> list[dict[str, float]]:
    """The monitored records of a run's ``metrics.jsonl``, in step order."""
    records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    return [r for r in records if "monitor/knn_top1" in r]


def plot_monitor(metrics_file: Path, path: Path, title: str = "") -> None:
    """The monitor's curves against the step: kNN top-1 and feature std (left axis), RankMe (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_monitor(metrics_file)
    if not records:
        raise ValueError(f"{metrics_file}: no monitor records (was eval.monitor_every set?)")
    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(steps, [r["monitor/knn_top1"] for r in records], "-o", color="C0", label="kNN top-1")
    ax.plot(steps, [r["monitor/feature_std"] for r in records], "--", color="C2", label="feature std x sqrt(dim)")
    ax.set_xlabel("step")
    ax.set_ylim(0, 1.05)
    ax.grid(True, alpha=0.3)
    right = ax.twinx()
    right.plot(steps, [r["monitor/rankme"] for r in records], "-s", color="C1", label="RankMe (right)")
    right.set_ylabel("effective rank")
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="lower right")
    ax.set_title(title or f"Online monitor: {metrics_file.parent.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
