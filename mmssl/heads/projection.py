"""Projection heads: map a tower's pooled features into the shared alignment space."""

from __future__ import annotations

import torch
from torch import nn

from mmssl.registry import HEADS


@HEADS.register("projection")
class ProjectionHead(nn.Module):
    """A bias-free linear map (CLIP, and transformers' dual encoders) or a two-layer MLP.

    The linear form is what ``VisionTextDualEncoderModel`` holds, so image-text models
    with it export as that class; the MLP (SimCLR-style, GELU) can help small towers.
    """

    def __init__(self, in_dim: int, out_dim: int, kind: str = "linear", hidden_dim: int | None = None) -> None:
        super().__init__()
        if kind == "linear":
            self.net: nn.Module = nn.Linear(in_dim, out_dim, bias=False)
        elif kind == "mlp":
            hidden = hidden_dim or in_dim
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
        else:
            raise ValueError(f"projection kind must be 'linear' or 'mlp', got {kind!r}")
        self.kind = kind

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)
