"""Towers for cross-modal alignment: one modality's adapter, backbone and pooling.

A tower turns one dataset cell (an image, a caption, a recording) into model inputs,
batches them, and encodes a batch to one pooled feature vector per example. Its backbone
is a transformers model built fresh from a preset, or loaded from an mmssl run directory
or an exported transformers folder (``init_from``, through ``mmssl.weights.load_backbone``), so that a CLIP model can start from
MAE, MLM or wav2vec 2.0 pretraining.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import (
    BertModel,
    CLIPImageProcessor,
    PreTrainedModel,
    ViTConfig,
    ViTModel,
    Wav2Vec2Model,
)

from mmssl.modalities.audio import AudioAdapter, valid_frames, wav2vec2_config, wav2vec2_processor
from mmssl.modalities.configs import TowerConfig
from mmssl.modalities.pooling import masked_mean, pool
from mmssl.modalities.text import TextAdapter, bert_config, load_tokenizer
from mmssl.modalities.vision import VisionAdapter, vit_config, vit_processor
from mmssl.recipe import DataConfig, ModelConfig
from mmssl.weights import load_backbone

#: the dataset column (role) each modality reads.
ROLES = {"vision": "image", "text": "text", "audio": "audio"}


_VIT_FIELDS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps",
    "image_size", "patch_size", "num_channels", "qkv_bias",
)


def as_vit(model: PreTrainedModel, pooler: bool) -> ViTModel:
    """A ``ViTModel`` with the weights of a ViT or ViT-MAE encoder (MAE's encoder is a ViT).

    The pooler (dense + tanh on the CLS token, what ``VisionTextDualEncoderModel`` reads)
    is added fresh when asked for and absent, and dropped when not asked for.
    """
    if isinstance(model, ViTModel) and (model.pooler is not None) == pooler:
        return model
    config = ViTConfig(**{name: getattr(model.config, name) for name in _VIT_FIELDS})
    vit = ViTModel(config, add_pooling_layer=pooler)
    result = vit.load_state_dict(model.state_dict(), strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("pooler.")]
    unexpected = [k for k in result.unexpected_keys if not k.startswith("pooler.")]
    if missing or unexpected:
        raise ValueError(
            f"cannot read a {type(model).__name__} as a ViT encoder "
            f"(missing: {missing[:3]}, unexpected: {unexpected[:3]})"
        )
    return vit


class Tower(nn.Module):
    """Base of the towers: a backbone plus pooling; subclasses add the modality's I/O."""

    modality = ""

    def __init__(self, model: PreTrainedModel, pooling: str) -> None:
        super().__init__()
        self.model = model
        self.pooling = pooling

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    def preprocess(self, value: Any, train: bool) -> dict[str, Any]:
        """Model inputs of one example from its dataset cell."""
        raise NotImplementedError

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled features ``[batch, hidden_size]``."""
        raise NotImplementedError

    def processor(self) -> Any:
        """The transformers processor that prepares raw inputs as ``preprocess`` does in eval."""
        raise NotImplementedError


class VisionTower(Tower):
    """ViT: ``pooler`` (dense+tanh on CLS), ``cls`` or ``mean`` of the patch tokens."""

    modality = "vision"

    def __init__(self, cfg: TowerConfig, data: DataConfig) -> None:
        pooling = "pooler" if cfg.pooling == "auto" else cfg.pooling
        if cfg.init_from:
            model = as_vit(load_backbone(cfg.init_from, "vision"), pooler=pooling == "pooler")
            image = data.image
            if (model.config.image_size, model.config.num_channels) != (image.size, image.channels):
                raise ValueError(
                    f"task.towers.vision.init_from: the model takes {model.config.image_size}px images "
                    f"with {model.config.num_channels} channels; set data.image.size and "
                    f"data.image.channels to match (now {image.size}, {image.channels})"
                )
        else:
            config = vit_config(ModelConfig(cfg.preset, dict(cfg.config)), data.image)
            model = ViTModel(config, add_pooling_layer=pooling == "pooler")
        super().__init__(model, pooling)
        self.image = data.image
        self.adapter = VisionAdapter(data.image)

    def preprocess(self, value: Any, train: bool) -> dict[str, Any]:
        return self.adapter.preprocess({"image": value}, train)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.adapter.collate(items)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.model(pixel_values=batch["pixel_values"])
        if self.pooling == "pooler":
            return out.pooler_output
        return pool(out.last_hidden_state, self.pooling)

    def processor(self) -> CLIPImageProcessor:
        return vit_processor(self.image)


class AudioTower(Tower):
    """Wav2Vec2: masked mean over the real (unpadded) frames, or the first frame (``cls``)."""

    modality = "audio"

    def __init__(self, cfg: TowerConfig, data: DataConfig) -> None:
        pooling = "mean" if cfg.pooling == "auto" else cfg.pooling
        if pooling == "pooler":
            raise ValueError("task.towers.audio.pooling: Wav2Vec2 has no pooler; use 'mean' or 'cls'")
        if cfg.init_from:
            model = load_backbone(cfg.init_from, "audio")
            if not isinstance(model, Wav2Vec2Model):
                model = getattr(model, "wav2vec2", model)
        else:
            model = Wav2Vec2Model(wav2vec2_config(ModelConfig(cfg.preset, dict(cfg.config)), data.audio))
        super().__init__(model, pooling)
        self.audio = data.audio
        self.adapter = AudioAdapter(data.audio)

    def preprocess(self, value: Any, train: bool) -> dict[str, Any]:
        return self.adapter.preprocess({"audio": value}, train)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.adapter.collate(items)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch.get("attention_mask")
        hidden = self.model(input_values=batch["input_values"], attention_mask=mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        frames = None if mask is None else valid_frames(self.model, mask)
        return masked_mean(hidden, frames)

    def processor(self) -> Any:
        return wav2vec2_processor(self.audio)


class TextTower(Tower):
    """BERT on a trained tokenizer (``data.text.tokenizer``): ``pooler``, ``cls`` or masked ``mean``."""

    modality = "text"

    def __init__(self, cfg: TowerConfig, data: DataConfig) -> None:
        pooling = "pooler" if cfg.pooling == "auto" else cfg.pooling
        tokenizer = load_tokenizer(data.text)
        if cfg.init_from:
            model = load_backbone(cfg.init_from, "text")
            model = getattr(model, "bert", model)
        else:
            config = bert_config(ModelConfig(cfg.preset, dict(cfg.config)), data.text, tokenizer)
            model = BertModel(config, add_pooling_layer=pooling == "pooler")
        if pooling == "pooler" and getattr(model, "pooler", None) is None:
            raise ValueError("task.towers.text.pooling: this text model has no pooler; use 'cls' or 'mean'")
        super().__init__(model, pooling)
        self.tokenizer = tokenizer
        self.adapter = TextAdapter(data.text, tokenizer)

    def preprocess(self, value: Any, train: bool) -> dict[str, Any]:
        return self.adapter.preprocess({"text": value}, train)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.adapter.collate(items)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["attention_mask"]
        out = self.model(input_ids=batch["input_ids"], attention_mask=mask)
        if self.pooling == "pooler":
            return out.pooler_output
        hidden = out.last_hidden_state
        return hidden[:, 0] if self.pooling == "cls" else masked_mean(hidden, mask)

    def processor(self) -> Any:
        return self.tokenizer


TOWERS: dict[str, type[Tower]] = {"vision": VisionTower, "text": TextTower, "audio": AudioTower}


def build_tower(modality: str, cfg: TowerConfig, data: DataConfig) -> Tower:
    """The tower for ``modality`` with the recipe's data settings for it."""
    if modality not in TOWERS:
        raise ValueError(f"task.modalities: no tower for {modality!r} (known: {', '.join(TOWERS)})")
    return TOWERS[modality](cfg, data)
