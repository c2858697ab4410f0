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

    ``batch_norm`` standardises the features over the batch first (no affine: the map after
    it has its own scale). Freshly initialised towers give nearly the same pooled vector to
    every input (cosine ~0.99 for a mean-pooled ViT), so all pairs look alike and the loss
    sits at ln(batch); centring removes that shared part (MoCo v3 and SimCLR v2 heads use
    BatchNorm too). Evaluation uses the running statistics.
    """

    def __init__(
        self, in_dim: int, out_dim: int, kind: str = "linear", hidden_dim: int | None = None, batch_norm: bool = False
    ) -> None:
        super().__init__()
        if kind == "linear":
            self.net: nn.Module = nn.Linear(in_dim, out_dim, bias=False)
        elif kind == "mlp":
            hidden = hidden_dim or in_dim
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
        else:
            raise ValueError(f"projection kind must be 'linear' or 'mlp', got {kind!r}")
        self.norm = nn.BatchNorm1d(in_dim, affine=False) if batch_norm else nn.Identity()
        self.kind = kind

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(features))
