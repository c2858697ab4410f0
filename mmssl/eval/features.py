"""Labelled evaluation batches and pooled features, extracted once and cached on disk.

Only the task contract is used: ``preprocess(example, train=False)``, ``collate_eval`` and
``embed(batch, pooling)``, so any modality works. Examples that fail to preprocess follow
the data section's bad-example policy: raise with the index, or skip and count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset

from mmssl.data.examples import BadExampleError, describe_example
from mmssl.progress import progress_bar
from mmssl.tasks.base import PretextTask


@dataclass
class Features:
    x: torch.Tensor  # [N, dim] float32
    y: torch.Tensor  # [N] int64
    index: torch.Tensor  # [N] int64: dataset row of each feature (bad examples skipped)
    skipped: int = 0

    def rows(self, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels of the given dataset rows (those that were not skipped)."""
        keep = torch.isin(self.index, torch.as_tensor(indices, dtype=torch.long))
        return self.x[keep], self.y[keep]


class LabelledExamples(Dataset):
    """``(preprocessed example, label, index)``, or ``None`` for a skipped bad example."""

    def __init__(self, task: PretextTask, data: Any, label_column: str, policy: str) -> None:
        self.task, self.data, self.label_column, self.policy = task, data, label_column, policy

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[dict, int, int] | None:
        example = self.data[int(index)]
        try:
            return self.task.preprocess(example, train=False), int(example[self.label_column]), int(index)
        except Exception as err:  # user data: judged by the bad-example policy
            if self.policy == "raise":
                raise BadExampleError(
                    f"eval {describe_example(int(index), example, None)}: {type(err).__name__}: {err} "
                    "(set data.on_bad_example=skip to skip such examples)"
                ) from err
            return None


class _Collate:
    def __init__(self, task: PretextTask) -> None:
        self.task = task

    def __call__(self, items: list) -> tuple[dict | None, torch.Tensor, torch.Tensor]:
        good = [item for item in items if item is not None]
        labels = torch.tensor([label for _, label, _ in good], dtype=torch.long)
        index = torch.tensor([i for _, _, i in good], dtype=torch.long)
        batch = self.task.collate_eval([example for example, _, _ in good]) if good else None
        return batch, labels, index


def eval_loader(
    task: PretextTask,
    data: Any,
    label_column: str,
    batch_size: int,
    policy: str = "raise",
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
) -> DataLoader:
    """Batches of ``(collate_eval batch, labels, dataset rows)``; the batch is ``None``
    when every example of it was skipped."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        LabelledExamples(task, data, label_column, policy),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        collate_fn=_Collate(task),
        num_workers=num_workers,
    )


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@torch.no_grad()
def extract_features(
    task: PretextTask,
    data: Any,
    label_column: str,
    pooling: str,
    batch_size: int,
    policy: str = "raise",
    num_workers: int = 0,
    desc: str = "features",
) -> Features:
    """Pooled features and labels of every usable example, in dataset order."""
    was_training = task.training
    task.eval()
    device = next(task.parameters()).device
    xs, ys, rows = [], [], []
    loader = eval_loader(task, data, label_column, batch_size, policy, num_workers=num_workers)
    try:
        for batch, labels, index in progress_bar(loader, desc=desc):
            if batch is None:
                continue
            xs.append(task.embed(to_device(batch, device), pooling).float().cpu())
            ys.append(labels)
            rows.append(index)
    finally:
        task.train(was_training)
    if not xs:
        raise ValueError(f"{desc}: no usable examples (all {len(data)} failed to preprocess)")
    index = torch.cat(rows)
    return Features(torch.cat(xs), torch.cat(ys), index, len(data) - len(index))


def cached_features(path: Path, fingerprint: dict[str, Any], compute: Any) -> Features:
    """Load features from ``path`` if they were made with the same fingerprint, else compute
    them with ``compute()`` and save them there (safetensors, fingerprint in the metadata)."""
    key = json.dumps(fingerprint, sort_keys=True, default=str)
    if path.is_file():
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if meta.get("fingerprint") == key:
            t = load_file(str(path))
            return Features(t["x"], t["y"], t["index"], int(meta.get("skipped", 0)))
    features = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(
        {"x": features.x.contiguous(), "y": features.y.contiguous(), "index": features.index},
        str(tmp),
        metadata={"fingerprint": key, "skipped": str(features.skipped)},
    )
    tmp.replace(path)
    return features
