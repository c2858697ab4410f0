"""Block masks for encoders that see only the visible positions (MAE-style, data2vec 2.0).

One rule for every modality: draw per-position noise that is constant over random blocks
(``block`` x ``block`` patches of an image grid, ``block``-long spans of tokens or frames),
keep the positions with the lowest noise and mask the rest. Kept positions then come in
whole blocks, which for images is data2vec 2.0's *inverse* block masking (blocks are what
the student sees), and the number kept per example is exact, so the visible sets of a batch
stack into one tensor. Padding (``valid`` false) is never kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class VisibleSet:
    """The positions a student encodes, for ``n`` examples of ``length`` positions.

    ``index`` (``[n, keep]``, ascending) gathers the kept positions; ``attend`` (``[n, keep]``)
    is false where an example has fewer real positions to keep than the batch's widest one
    (those slots are padding for the encoder); ``visible`` (``[n, length]``) marks the
    positions the encoder really saw.
    """

    index: torch.Tensor
    attend: torch.Tensor
    visible: torch.Tensor


def block_noise(n: int, grid: tuple[int, ...], block: int, device: torch.device | None = None) -> torch.Tensor:
    """``[n, prod(grid)]`` sort keys: a random rank per ``block``-sided cell (cells start at a
    random per-example offset) plus the position's place in the sequence scaled below 1, so
    cells sort whole and in random order, and the one cell kept in part keeps its first
    positions (a contiguous piece)."""
    cells_shape = [size // block + 2 for size in grid]
    coarse = torch.rand(n, math.prod(cells_shape), device=device).argsort(dim=1).argsort(dim=1)
    coarse = coarse.float().view(n, *cells_shape)
    index: list[torch.Tensor] = [torch.arange(n, device=device).view(n, *[1] * len(grid))]
    for axis, size in enumerate(grid):
        offset = torch.randint(0, block, (n, 1), device=device)
        cells = (torch.arange(size, device=device)[None, :] + offset) // block
        shape = [n] + [1] * len(grid)
        shape[axis + 1] = size
        index.append(cells.view(shape))
    noise = coarse[tuple(index)].reshape(n, -1)
    return noise + torch.arange(noise.shape[1], device=device) / noise.shape[1]


def visible_set(noise: torch.Tensor, mask_ratio: float, valid: torch.Tensor | None = None) -> VisibleSet:
    """Keep the ``round((1 - mask_ratio) * real length)`` lowest-noise real positions of each row."""
    n, length = noise.shape
    if valid is None:
        valid = torch.ones(n, length, dtype=torch.bool, device=noise.device)
    keep = ((1.0 - mask_ratio) * valid.sum(dim=1)).round().long().clamp(min=1)
    order = noise.masked_fill(~valid, float("inf")).argsort(dim=1)  # padding sorts last: never kept
    width = int(keep.max())
    attend = torch.arange(width, device=noise.device)[None, :] < keep[:, None]
    index, sort = order[:, :width].sort(dim=1)
    attend = attend.gather(1, sort)
    visible = torch.zeros(n, length, dtype=torch.bool, device=noise.device).scatter(1, index, attend)
    return VisibleSet(index, attend, visible)


def gather_positions(hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``hidden[i, index[i]]`` for ``[n, length, dim]`` hidden states."""
    return hidden.gather(1, index.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
