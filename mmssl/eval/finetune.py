"""Fine-tuning: the backbone and a classification head trained end to end.

The backbone learns at ``finetune_lr * finetune_backbone_lr_scale`` and the fresh head at
``finetune_lr`` (AdamW, cosine schedule, gradient clipping), so pretrained features are
adapted rather than overwritten in the first steps. The task is copied: the caller's
weights stay as they were.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from mmssl.eval.features import eval_loader, to_device
from mmssl.eval.knn import topk_accuracy
from mmssl.heads.classification import ClassificationHead
from mmssl.progress import progress_bar
from mmssl.recipe import EvalConfig
from mmssl.tasks.base import PretextTask


def _feature_dim(task: PretextTask, loader: Any, pooling: str, device: torch.device) -> int:
    with torch.no_grad():
        for batch, _, _ in loader:
            if batch is not None:
                return task.embed(to_device(batch, device), pooling).shape[1]
    raise ValueError("fine-tune: no usable training examples")


def finetune_epoch_count(cfg: EvalConfig, batches_per_epoch: int) -> int:
    """``finetune_epochs``, or more so that at least ``finetune_min_steps`` steps are taken:
    with 1% of the labels, three epochs are a handful of steps, too few for the
    from-scratch baseline (or a pretrained backbone) to learn anything."""
    return max(cfg.finetune_epochs, math.ceil(cfg.finetune_min_steps / max(1, batches_per_epoch)))


def finetune(
    task: PretextTask,
    train_data: Any,
    test_data: Any,
    label_column: str,
    num_classes: int,
    cfg: EvalConfig,
    policy: str = "raise",
    seed: int = 0,
    desc: str = "finetune",
) -> dict[str, float]:
    """Train a copy of ``task``'s backbone plus a head on ``train_data``; test top-1/top-5."""
    torch.manual_seed(seed)
    model = copy.deepcopy(task)
    device = next(model.parameters()).device
    train_loader = eval_loader(
        model, train_data, label_column, cfg.finetune_batch_size, policy, shuffle=True, seed=seed
    )
    model.eval()
    head = ClassificationHead(_feature_dim(model, train_loader, cfg.pooling, device), num_classes).to(device)
    backbone_params = [p for p in model.backbone.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": backbone_params, "lr": cfg.finetune_lr * cfg.finetune_backbone_lr_scale},
            {"params": head.parameters(), "lr": cfg.finetune_lr},
        ],
        weight_decay=0.05,
    )
    epochs = finetune_epoch_count(cfg, len(train_loader))
    total = max(1, epochs * len(train_loader))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    head.train()
    params = backbone_params + list(head.parameters())
    with progress_bar(total=total, desc=desc) as bar:
        for _ in range(epochs):
            for batch, labels, _ in train_loader:
                bar.update()
                if batch is None:
                    continue
                logits = head(model.embed(to_device(batch, device), cfg.pooling))
                loss = loss_fn(logits, labels.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                schedule.step()
                bar.set_postfix(loss=f"{loss.item():.3f}")
    return evaluate_classifier(model, head, test_data, label_column, cfg, policy)


@torch.no_grad()
def evaluate_classifier(
    model: PretextTask, head: nn.Module, data: Any, label_column: str, cfg: EvalConfig, policy: str
) -> dict[str, float]:
    """Top-1/top-5 of ``head(model.embed(...))`` on ``data``."""
    model.eval()
    head.eval()
    device = next(model.parameters()).device
    scores, labels = [], []
    for batch, y, _ in eval_loader(model, data, label_column, cfg.batch_size, policy):
        if batch is not None:
            scores.append(head(model.embed(to_device(batch, device), cfg.pooling)).float().cpu())
            labels.append(y)
    return topk_accuracy(torch.cat(scores), torch.cat(labels))
