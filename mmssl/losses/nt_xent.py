"""NT-Xent, SimCLR's normalized temperature-scaled cross-entropy, with global negatives.

For ``n`` examples with two views each, every view's positive is the other view of its
example and its negatives are the other ``2N - 2`` views of the global batch (``N`` over
all processes). As in lightly's ``NTXentLoss``, each process scores its local rows against
the gathered columns (gathered with gradients, see :func:`mmssl.losses.infonce.gather_with_grad`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmssl.losses.infonce import gather_with_grad


def nt_xent_loss(
    z0: torch.Tensor, z1: torch.Tensor, temperature: float = 0.5, gather: bool = True
) -> torch.Tensor:
    """Mean NT-Xent over both views; ``z0[i]`` and ``z1[i]`` are views of example ``i``.

    Inputs are projections ``[batch, dim]`` (normalized here). Returns a scalar.
    """
    if z0.shape != z1.shape or z0.ndim != 2:
        raise ValueError(f"nt_xent_loss needs two [batch, dim] tensors of one shape, got {z0.shape} and {z1.shape}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    z0, z1 = F.normalize(z0, dim=1), F.normalize(z1, dim=1)
    if gather:
        all0, offset = gather_with_grad(z0)
        all1, _ = gather_with_grad(z1)
    else:
        all0, all1, offset = z0, z1, 0
    n = z0.shape[0]
    rows = torch.arange(n, device=z0.device)
    own = rows + offset
    self_mask = torch.zeros(n, all0.shape[0], dtype=torch.bool, device=z0.device)
    self_mask[rows, own] = True
    # a view is never its own negative: push its self-similarity out of the softmax
    logits_00 = (z0 @ all0.T / temperature).masked_fill(self_mask, float("-inf"))
    logits_11 = (z1 @ all1.T / temperature).masked_fill(self_mask, float("-inf"))
    logits_01 = z0 @ all1.T / temperature
    logits_10 = z1 @ all0.T / temperature
    logits = torch.cat([torch.cat([logits_01, logits_00], 1), torch.cat([logits_10, logits_11], 1)])
    return F.cross_entropy(logits, own.repeat(2))
