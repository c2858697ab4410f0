"""Cross-modal retrieval metrics: recall at k in both directions.

Relevance is a boolean matrix, so one function serves instance retrieval (an image and its
five captions) and class-level retrieval (any recording of the same digit counts).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def recall_at_k(similarity: torch.Tensor, relevant: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Fraction of queries (rows) with at least one relevant item among their top ``k``."""
    if similarity.shape != relevant.shape:
        raise ValueError(f"similarity {tuple(similarity.shape)} and relevance {tuple(relevant.shape)} differ")
    if not relevant.any(dim=1).all():
        raise ValueError("every query needs at least one relevant item")
    top = similarity.topk(min(max(ks), similarity.shape[1]), dim=1).indices
    hits = relevant.gather(1, top)
    return {k: hits[:, :k].any(dim=1).float().mean().item() for k in ks}


def labels_relevance(query_labels: torch.Tensor, item_labels: torch.Tensor) -> torch.Tensor:
    """Class-level relevance: a query matches every item with its label."""
    return query_labels[:, None] == item_labels[None, :]


def retrieval_metrics(
    a: torch.Tensor,
    b: torch.Tensor,
    relevant: torch.Tensor,
    names: tuple[str, str] = ("a", "b"),
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """R@k for ``a``->``b`` and ``b``->``a`` of L2-normalised embeddings (``relevant`` is [A, B]).

    Keys read ``"image_to_text/R@5"``; chance level is reported as ``.../chance@1`` (the
    mean fraction of relevant items), so a reader can tell learning from luck.
    """
    similarity = a @ b.T
    out: dict[str, float] = {}
    for sim, rel, (src, dst) in ((similarity, relevant, names), (similarity.T, relevant.T, names[::-1])):
        for k, value in recall_at_k(sim, rel, ks).items():
            out[f"{src}_to_{dst}/R@{k}"] = value
        out[f"{src}_to_{dst}/chance@1"] = rel.float().mean().item()
    return out
