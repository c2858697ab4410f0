"""One vector per example from a backbone's sequence output, the same way for every task,
tower and probe: ViT's CLS token or patch mean, or a mean over real tokens or frames."""

from __future__ import annotations

import torch


def pool(hidden: torch.Tensor, pooling: str) -> torch.Tensor:
    """ViT features: ``cls`` is the first token, ``mean`` the average of the patch tokens."""
    return hidden[:, 0] if pooling == "cls" else hidden[:, 1:].mean(dim=1)


def masked_mean(hidden: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Average over the positions where ``valid`` is true, so padding does not count
    (over all positions without a mask)."""
    if valid is None:
        return hidden.mean(dim=1)
    weights = valid.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
