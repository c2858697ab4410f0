"""Zero-shot classification in an alignment space: class embeddings from the other tower.

The class embeddings come from prompt templates (``"a photo of the digit {name}"``,
averaged over templates as CLIP does) or from class prototypes (the mean embedding of the
other modality's examples of each class, e.g. spoken digits for images of digits). The
prompts themselves are ``mmssl.data.pairing.prompt_texts``, which CLIP also trains a tokenizer on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def class_prototypes(embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The L2-normalised mean embedding of each class, ``[num_classes, dim]``.

    With prompts, pass the template index as the examples of a class (``labels`` from
    :func:`prompt_labels`) to average over templates.
    """
    counts = torch.bincount(labels, minlength=num_classes)
    missing = (counts == 0).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"no examples of class(es) {missing} to build prototypes from")
    sums = torch.zeros(num_classes, embeddings.shape[1], dtype=embeddings.dtype)
    sums.index_add_(0, labels, embeddings)
    return F.normalize(sums / counts[:, None], dim=-1)


def prompt_labels(num_classes: int, num_templates: int) -> torch.Tensor:
    """The class of each text of :func:`mmssl.data.pairing.prompt_texts`."""
    return torch.arange(num_classes).repeat_interleave(num_templates)


def zero_shot_accuracy(
    queries: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor, ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """Top-k accuracy of classifying normalised ``queries`` by their most similar prototype."""
    scores = queries @ prototypes.T
    top = scores.topk(min(max(ks), prototypes.shape[0]), dim=1).indices
    hits = top == labels[:, None]
    out = {f"top{k}": hits[:, :k].any(dim=1).float().mean().item() for k in ks if k <= prototypes.shape[0]}
    out["chance"] = 1.0 / prototypes.shape[0]
    return out
