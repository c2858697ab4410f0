"""Towers for cross-modal alignment: one modality's encoder and pooling, for any modality.

A tower turns one dataset cell (an image, a caption, a recording) into model inputs,
batches them, and encodes a batch to one pooled feature vector per example, all through
its :class:`~mmssl.modalities.base.Modality`. Its encoder is a transformers model built
fresh from a preset (``Modality.tower_encoder``), or loaded from an mmssl run directory or
an exported transformers folder (``init_from``, through ``mmssl.weights.load_backbone``;
``Modality.adopt_tower_encoder``), so that
a CLIP model can start from MAE, MLM or wav2vec 2.0 pretraining.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmssl.modalities.base import Modality
from mmssl.modalities.configs import TowerConfig
from mmssl.weights import load_backbone


class Tower(nn.Module):
    """A modality's encoder plus pooling (``task.towers.<modality>.pooling``; ``auto`` is
    the modality's ``tower_pooling``: the pooler for ViT and BERT, the mean for Wav2Vec2)."""

    def __init__(self, modality: Modality, cfg: TowerConfig) -> None:
        super().__init__()
        pooling = modality.tower_pooling if cfg.pooling == "auto" else cfg.pooling
        if pooling not in modality.tower_poolings:
            raise ValueError(f"task.towers.{modality.name}.pooling={pooling!r}: a {modality.name} tower "
                             f"pools by {' or '.join(map(repr, modality.tower_poolings))}")
        if cfg.init_from:
            model = modality.adopt_tower_encoder(load_backbone(cfg.init_from, modality.name), pooling)
        else:
            model = modality.tower_encoder(cfg, pooling)
        self.model = model
        self.pooling = pooling
        self.modality = modality

    @property
    def hidden_size(self) -> int:
        return self.modality.hidden_size(self.model)

    def preprocess(self, value: Any, train: bool) -> dict[str, Any]:
        """Model inputs of one example from its dataset cell."""
        return self.modality.preprocess({self.modality.column: value}, train)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.modality.collate(items)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled features ``[batch, hidden_size]``."""
        return self.modality.tower_features(self.model, batch, self.pooling)

    def processor(self) -> Any:
        """The transformers processor that prepares raw inputs as ``preprocess`` does in eval."""
        return self.modality.processor()
