"""What the image joint-embedding tasks (SimCLR, BYOL, DINO) share: a ``ViTModel``
encoder, decoding into several augmented views, pooled features, eval and export."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import ViTImageProcessor, ViTModel

from mmssl.augment.vision import MultiView, ViewConfig, collate_views, view_transform
from mmssl.modalities.vision import VisionAdapter, decode_image, vit_config, vit_processor
from mmssl.recipe import Recipe
from mmssl.tasks.base import PretextTask


def pool(hidden: torch.Tensor, pooling: str) -> torch.Tensor:
    """``cls``: the first token; ``mean``: the average of the patch tokens."""
    return hidden[:, 0] if pooling == "cls" else hidden[:, 1:].mean(dim=1)


class ViTViewsTask(PretextTask):
    """Base of the image tasks trained on augmented views of each example."""

    modalities = ("vision",)
    required_columns = ("image",)

    def __init__(self, recipe: Recipe, views: list[ViewConfig]) -> None:
        super().__init__(recipe)
        if recipe.task.modality != "vision":
            raise ValueError(
                f"task.modality={recipe.task.modality!r}: {recipe.task.name} supports only 'vision' so far"
            )
        self.encoder = ViTModel(vit_config(recipe.model, recipe.data.image), add_pooling_layer=False)
        self.adapter = VisionAdapter(recipe.data.image)
        self.views = MultiView([view_transform(recipe.data.image, v) for v in views])
        self.pooling = recipe.task.pooling

    @property
    def feature_dim(self) -> int:
        return self.encoder.config.hidden_size

    def features(self, encoder: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled features of one batch of crops (local crops use interpolated positions)."""
        hidden = encoder(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state
        return pool(hidden, self.pooling)

    def preprocess(self, example: dict[str, Any], train: bool = True) -> dict[str, Any]:
        if not train:
            return self.adapter.preprocess(example, train=False)
        return {"views": self.views(decode_image(example["image"], self.recipe.data.image.channels))}

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return collate_views(examples)

    def collate_eval(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.adapter.collate(examples)

    def view_batches(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [batch[f"views_{k}"] for k in range(len(batch))]

    @property
    def backbone(self) -> nn.Module:
        return self.encoder

    def embed(self, batch: dict[str, torch.Tensor], pooling: str = "mean") -> torch.Tensor:
        return pool(self.encoder(pixel_values=batch["pixel_values"]).last_hidden_state, pooling)

    def export_model(self) -> ViTModel:
        """The encoder: the projection heads are training-only, as in SimCLR/BYOL/DINO."""
        return self.encoder

    def processor(self) -> ViTImageProcessor:
        return vit_processor(self.recipe.data.image)
