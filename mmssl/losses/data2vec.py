"""data2vec's targets and loss: the average of the teacher's top-K layer outputs, each
normalized per instance, regressed at the student's masked positions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def instance_norm(hidden: torch.Tensor, valid: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Normalize each feature over the time axis of each example, ``[batch, time, dim]``,
    using only ``valid`` positions (``[batch, time]`` bool) for the statistics (padding)."""
    if valid is None:
        return F.instance_norm(hidden.transpose(1, 2).float(), eps=eps).transpose(1, 2)
    weights = valid.unsqueeze(-1).float()
    count = weights.sum(dim=1, keepdim=True).clamp(min=1)
    mean = (hidden.float() * weights).sum(dim=1, keepdim=True) / count
    var = (((hidden.float() - mean) ** 2) * weights).sum(dim=1, keepdim=True) / count
    return (hidden.float() - mean) / torch.sqrt(var + eps)


def data2vec_targets(
    hidden_states: tuple[torch.Tensor, ...] | list[torch.Tensor],
    top_k: int,
    norm: str = "instance",
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Average of the last ``top_k`` of ``hidden_states`` (each ``[batch, time, dim]``),
    each normalized first: ``instance`` over time (vision, audio), ``layer`` over features
    (text, as in data2vec's text model)."""
    if not 1 <= top_k <= len(hidden_states):
        raise ValueError(f"top_k must be in [1, {len(hidden_states)}], got {top_k}")
    layers = hidden_states[-top_k:]
    if norm == "instance":
        normed = [instance_norm(h, valid) for h in layers]
    elif norm == "layer":
        normed = [F.layer_norm(h.float(), h.shape[-1:]) for h in layers]
    else:
        raise ValueError(f"norm must be 'instance' or 'layer', got {norm!r}")
    return torch.stack(normed).mean(dim=0)


def data2vec_loss(prediction: torch.Tensor, target: torch.Tensor, beta: float = 0.0) -> torch.Tensor:
    """Regression of ``[positions, dim]`` predictions on targets: mean squared error when
    ``beta == 0``, else smooth L1 with that ``beta`` (data2vec's choice for vision/audio)."""
    if beta == 0:
        return F.mse_loss(prediction.float(), target)
    return F.smooth_l1_loss(prediction.float(), target, beta=beta)
