"""Symmetric InfoNCE (the CLIP loss), with negatives gathered across processes.

Under data parallel training each process holds a slice of the global batch. As in
open_clip (``local_loss=True, gather_with_grad=True``), every process gathers the
embeddings of all processes with ``torch.distributed.nn.functional.all_gather`` (whose
backward sends each process the gradients of its own slice) and scores its local rows
against all global columns. The mean of the per-process losses is the loss of one process
holding the whole batch (each local loss is weighted by its share of the global batch,
so this holds for uneven slices too), and after DDP averages the gradients they are that
process's gradients too.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All processes' rows of ``x`` concatenated in rank order, differentiable.

    Returns the gathered tensor and the offset of this process's rows in it. Slices may
    differ in length (a skipped bad example makes one batch shorter): they are padded to
    the longest for the collective and cut back afterwards.
    """
    rank, size = world()
    if size == 1:
        return x, 0
    from torch.distributed.nn.functional import all_gather

    length = torch.tensor([x.shape[0]], device=x.device)
    lengths = [torch.zeros_like(length) for _ in range(size)]
    dist.all_gather(lengths, length)
    counts = [int(n.item()) for n in lengths]
    longest = max(counts)
    padded = torch.cat([x, x.new_zeros(longest - x.shape[0], *x.shape[1:])]) if x.shape[0] < longest else x
    parts = all_gather(padded)
    gathered = torch.cat([part[:n] for part, n in zip(parts, counts)])
    return gathered, sum(counts[:rank])


def clip_logit_scale(log_scale: torch.Tensor, max_scale: float = 100.0) -> torch.Tensor:
    """``exp(log_scale)`` clamped to ``max_scale`` (CLIP's cap on the inverse temperature)."""
    return log_scale.exp().clamp(max=max_scale)


def clip_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor,
    gather: bool = True,
    labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE between row-aligned, L2-normalised embeddings ``a`` and ``b``.

    ``a[i]`` and ``b[i]`` are a positive pair; every other row of the (global) batch is a
    negative, except, given ``labels`` (the class of each pair), rows of the same class:
    when pairs are drawn by class they are as right a match as the drawn partner, so they
    are left out of the softmax instead of being pushed away.
    ``logit_scale`` is the multiplier of the cosine similarities (1/temperature).
    Returns ``(loss, accuracy)``: the mean of the a->b and b->a cross-entropies, and the
    fraction of local rows whose positive has the highest score, both directions averaged.
    """
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"clip_loss needs two [batch, dim] tensors of one shape, got {a.shape} and {b.shape}")
    if gather:
        all_a, offset = gather_with_grad(a)
        all_b, _ = gather_with_grad(b)
    else:
        all_a, all_b, offset = a, b, 0
    targets = torch.arange(offset, offset + a.shape[0], device=a.device)
    logits_ab = logit_scale * a @ all_b.T
    logits_ba = logit_scale * b @ all_a.T
    if labels is not None:
        all_labels = gather_with_grad(labels)[0] if gather else labels
        same = labels[:, None] == all_labels[None, :]
        same[torch.arange(a.shape[0], device=a.device), targets] = False
        logits_ab = logits_ab.masked_fill(same, float("-inf"))
        logits_ba = logits_ba.masked_fill(same, float("-inf"))
    summed = F.cross_entropy(logits_ab, targets, reduction="sum") + F.cross_entropy(
        logits_ba, targets, reduction="sum"
    )
    # weighted so that the mean over processes is the global mean, even for uneven slices
    processes = world()[1] if gather else 1
    loss = summed * processes / (2 * all_a.shape[0])
    with torch.no_grad():
        hits = (logits_ab.argmax(1) == targets).float().mean() + (logits_ba.argmax(1) == targets).float().mean()
    return loss, hits / 2


def init_log_scale(temperature: float) -> float:
    """The log of the initial logit scale for a temperature (CLIP starts at 0.07)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return math.log(1.0 / temperature)
