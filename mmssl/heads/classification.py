"""Classification head for fine-tuning: pooled features -> class logits."""

from __future__ import annotations

import torch
from torch import nn

from mmssl.registry import HEADS


@HEADS.register("classification")
class ClassificationHead(nn.Module):
    """LayerNorm, dropout and a linear layer on pooled backbone features (ViT/BERT style)."""

    def __init__(self, dim: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(self.norm(features)))
