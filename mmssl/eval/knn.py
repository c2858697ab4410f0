"""Weighted k-nearest-neighbour classification on frozen features (InstDisc/DINO protocol).

Features are L2-normalised; each test example's ``k`` most cosine-similar training examples
vote for their class with weight ``exp(similarity / temperature)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def knn_scores(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> torch.Tensor:
    """Per-class vote totals ``[num_test, num_classes]``; no training example is an error
    (with none to vote, every class would tie at zero and class 0 would win)."""
    if len(train_x) == 0:
        raise ValueError("kNN: no training examples to vote (are all labelled rows bad or filtered?)")
    train = F.normalize(train_x.float(), dim=1)
    k = min(k, len(train))
    scores = []
    for start in range(0, len(test_x), chunk):
        query = F.normalize(test_x[start : start + chunk].float(), dim=1)
        sim, idx = (query @ train.T).topk(k, dim=1)
        votes = torch.zeros(len(query), num_classes)
        votes.scatter_add_(1, train_y[idx].long(), (sim / temperature).exp())
        scores.append(votes)
    return torch.cat(scores)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """``{"top1": ..., "top5": ...}``; ``k`` beyond the number of classes counts every class."""
    top = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hits = top == labels[:, None]
    return {f"top{k}": hits[:, :k].any(dim=1).float().mean().item() for k in ks}


def knn_classify(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy of the weighted kNN classifier."""
    scores = knn_scores(train_x, train_y, test_x, num_classes, k, temperature)
    return topk_accuracy(scores, test_y.long())
