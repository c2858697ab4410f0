"""Projection and prediction heads of the joint-embedding tasks (SimCLR, BYOL, DINO)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmssl.registry import HEADS


@HEADS.register("mlp")
class MLPHead(nn.Module):
    """``num_layers`` linear layers with batch norm and ReLU between them.

    SimCLR's projection (2 layers), BYOL's projector and predictor (2 layers); the same
    layout as lightly's ``SimCLRProjectionHead`` and ``BYOLProjectionHead``.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2,
                 batch_norm: bool = True) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(dim, hidden_dim, bias=not batch_norm)]
            layers += [nn.BatchNorm1d(hidden_dim)] if batch_norm else []
            layers += [nn.ReLU(inplace=True)]
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


@HEADS.register("dino")
class DINOHead(nn.Module):
    """DINO's head: a GELU MLP to a bottleneck, L2 normalization, and a weight-normalized
    linear layer (unit-norm rows, magnitude frozen) to ``out_dim`` prototypes.

    As in the reference, the MLP starts from truncated-normal weights (std 0.02) and zero
    biases (random biases would add the same vector to every input), and ``batch_norm``
    (the reference's ``use_bn_in_head``) puts batch norm after each hidden layer, which takes
    out the part of the features that all inputs share.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 out_dim: int = 65536, num_layers: int = 3, batch_norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(dim, hidden_dim)]
            layers += [nn.BatchNorm1d(hidden_dim)] if batch_norm else []
            layers += [nn.GELU()]
            dim = hidden_dim
        layers.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last.parametrizations.weight.original0.data.fill_(1.0)
        self.last.parametrizations.weight.original0.requires_grad_(False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.last(F.normalize(self.mlp(features), dim=-1))
