"""DINO's self-distillation loss: cross-entropy between a centered, sharpened teacher and
the student over all pairs of different crops, and the running center of the teacher."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from mmssl.losses.infonce import world


def dino_loss(
    student: list[torch.Tensor],
    teacher: list[torch.Tensor],
    center: torch.Tensor,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
) -> torch.Tensor:
    """Mean of ``-sum softmax((t - center) / T_t) * log_softmax(s / T_s)`` over crop pairs.

    ``teacher`` holds the logits of the global crops ``[batch, out_dim]``; ``student`` those
    of all crops, the global ones first in the same order, so pair ``(i, i)`` (the same crop)
    is left out. ``center`` is ``[out_dim]``; subtracting it and a low teacher temperature
    together prevent collapse to one dimension or to the uniform distribution.
    """
    if len(student) < len(teacher):
        raise ValueError(f"dino_loss: {len(student)} student crops but {len(teacher)} teacher crops")
    targets = [F.softmax((t.detach() - center) / teacher_temperature, dim=-1) for t in teacher]
    logs = [F.log_softmax(s / student_temperature, dim=-1) for s in student]
    total, pairs = 0.0, 0
    for i, target in enumerate(targets):
        for j, log_prob in enumerate(logs):
            if i == j:
                continue
            total = total + (-(target * log_prob).sum(dim=-1)).mean()
            pairs += 1
    if pairs == 0:
        raise ValueError("dino_loss needs at least two crops")
    return total / pairs


@torch.no_grad()
def update_center(center: torch.Tensor, teacher: list[torch.Tensor], momentum: float = 0.9) -> torch.Tensor:
    """``momentum * center + (1 - momentum) * mean`` of the teacher logits over the global
    batch (all crops, all processes); returns the new center."""
    logits = torch.cat(teacher)
    total = logits.sum(dim=0)
    count = torch.tensor(float(logits.shape[0]), device=logits.device)
    if world()[1] > 1:
        dist.all_reduce(total)
        dist.all_reduce(count)
    return center * momentum + (total / count) * (1 - momentum)
