"""Linear probe: a linear classifier on frozen, standardised features.

Features are standardised (MAE's BatchNorm-without-affine before the probe) with the
statistics of ``scale_from``: ``mmssl eval`` passes the whole training split's features,
which needs no label; the default is the labelled subset itself. A small subset of sparse
features (TF-IDF) would otherwise give the terms it lacks a scale of ~0 and blow them up on
the test split. Then a linear layer is trained with AdamW and a cosine schedule
for each (learning rate, weight decay) of a small grid. The pair with the best validation
top-1 is kept and its model is scored on the test split.

With no validation example (every class has a single labelled example) there is nothing to
choose on: a grid of one point is fitted as is (``val_top1`` is None), a larger grid is an
error rather than silently its first point.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mmssl.eval.knn import topk_accuracy


@dataclass
class ProbeResult:
    top1: float
    top5: float
    val_top1: float | None
    lr: float
    weight_decay: float


def train_linear(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    lr: float,
    weight_decay: float,
    epochs: int,
    batch_size: int = 1024,
    seed: int = 0,
) -> nn.Linear:
    """Fit ``nn.Linear`` with cross-entropy on (already standardised) features."""
    generator = torch.Generator().manual_seed(seed)
    layer = nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        layer.weight.normal_(0.0, 0.01, generator=generator)
        layer.bias.zero_()
    steps_per_epoch = max(1, -(-len(x) // batch_size))
    optimizer = torch.optim.AdamW(layer.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            loss = loss_fn(layer(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return layer


def linear_probe(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    lrs: Sequence[float] = (1e-3, 1e-2, 1e-1),
    weight_decays: Sequence[float] = (0.0, 1e-4),
    epochs: int = 100,
    seed: int = 0,
    scale_from: torch.Tensor | None = None,
) -> ProbeResult:
    """Sweep the grid on ``val``, return the test accuracy of the best probe; features are
    standardised with the statistics of ``scale_from`` (default: ``train``'s features)."""
    grid = list(itertools.product(lrs, weight_decays))
    if not grid:
        raise ValueError("linear probe: the lr/weight-decay grid is empty")
    if len(train[0]) == 0:
        raise ValueError("linear probe: no training examples (are all labelled rows bad or filtered?)")
    if len(val[0]) == 0 and len(grid) > 1:
        raise ValueError(
            "linear probe: the validation split is empty (every class has a single labelled "
            "example), so the lr/weight-decay grid cannot be swept: give at least two examples "
            "per class, or set eval.linear_lrs and eval.linear_weight_decays to one value each"
        )
    scale_from = train[0] if scale_from is None else scale_from
    mean = scale_from.float().mean(0)
    std = scale_from.float().std(0, unbiased=False).clamp(min=1e-6)

    def norm(x: torch.Tensor) -> torch.Tensor:
        return (x.float() - mean) / std

    x_train, y_train = norm(train[0]), train[1].long()
    x_val, y_val = norm(val[0]), val[1].long()
    best: tuple[float | None, float, float, nn.Linear] | None = None
    for lr, wd in grid:
        layer = train_linear(x_train, y_train, num_classes, lr, wd, epochs, seed=seed)
        with torch.no_grad():
            val_top1 = topk_accuracy(layer(x_val), y_val, (1,))["top1"] if len(x_val) else None
        if best is None or (val_top1 is not None and val_top1 > best[0]):
            best = (val_top1, lr, wd, layer)
    val_top1, lr, wd, layer = best
    with torch.no_grad():
        scores = topk_accuracy(layer(norm(test[0])), test[1].long())
    return ProbeResult(scores["top1"], scores["top5"], val_top1, lr, wd)
