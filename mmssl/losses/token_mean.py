"""Cross-entropy averaged over the predicted tokens of the global batch.

Under data parallel training each process holds a different number of masked tokens. A
per-process mean, averaged again by DDP, weighs a token in a sparsely masked slice more
than one in a densely masked slice, so N processes would not train like one process with
the whole batch. Dividing each process's summed loss by the global token count (and
multiplying by the number of processes, which DDP's gradient average divides out) gives
exactly the one-process mean, as `average_tokens_across_devices` does in HF's Trainer.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from mmssl.losses.infonce import world


def global_token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``sum(CE) * processes / tokens over all processes``; the plain mean on one process."""
    total = F.cross_entropy(logits.float(), targets, reduction="sum")
    count = torch.tensor(float(targets.numel()), device=logits.device)
    processes = world()[1]
    if processes > 1:
        dist.all_reduce(count)
    return total * processes / count.clamp(min=1)
