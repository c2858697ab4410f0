"""ViT (``ViTModel``): today's image encoder, for the view tasks, data2vec and CLIP towers;
MAE trains it with a light decoder (``ViTMAEForPreTraining``) and exports it as a ``ViTModel``."""

from __future__ import annotations

from typing import Any

import torch
from transformers import ViTModel

from mmssl.backbones.base import VIEW_TASKS, Backbone, register
from mmssl.modalities.pooling import pool
from mmssl.modalities.vision import vit_config, vit_processor
from mmssl.recipe import DataConfig, ModelConfig


def build(model: ModelConfig, data: DataConfig, tokenizer: Any = None) -> ViTModel:
    return ViTModel(vit_config(model, data.image), add_pooling_layer=False)


def pooled(model: ViTModel, batch: dict[str, torch.Tensor], pooling: str) -> torch.Tensor:
    """CLS token or patch mean. Crops smaller than the position table (DINO's local views)
    get it interpolated; at the native size interpolation is an identity that costs time."""
    pixels = batch["pixel_values"]
    size = model.config.image_size
    interpolate = pixels.shape[-1] != size or pixels.shape[-2] != size
    return pool(model(pixel_values=pixels, interpolate_pos_encoding=interpolate).last_hidden_state, pooling)


VIT = register(Backbone(
    name="vit", modality="vision", model_type="vit", tasks=(*VIEW_TASKS, "data2vec", "data2vec2", "clip", "mae"),
    build=build, pooled=pooled, processor=lambda data, tokenizer=None: vit_processor(data.image),
    pipeline_tag="image-feature-extraction",
), __name__)
