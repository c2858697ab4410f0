"""Wav2Vec2 (``Wav2Vec2Model``): today's waveform encoder, for wav2vec 2.0, the view tasks,
data2vec and CLIP towers. It has no CLS token: features are the mean over real frames."""

from __future__ import annotations

from typing import Any

import torch
from transformers import Wav2Vec2Model

from mmssl.backbones.base import VIEW_TASKS, Backbone, register
from mmssl.modalities.audio import valid_frames, wav2vec2_config, wav2vec2_processor
from mmssl.modalities.pooling import masked_mean
from mmssl.recipe import DataConfig, ModelConfig


def build(model: ModelConfig, data: DataConfig, tokenizer: Any = None) -> Wav2Vec2Model:
    return Wav2Vec2Model(wav2vec2_config(model, data.audio))


def pooled(model: Wav2Vec2Model, batch: dict[str, torch.Tensor], pooling: str) -> torch.Tensor:
    """Mean over the frames of real samples. The explicit empty time mask stops the model
    from drawing its own SpecAugment mask, which would use numpy's unseeded RNG."""
    valid = valid_frames(model, batch["attention_mask"])
    hidden = model(batch["input_values"], attention_mask=batch["attention_mask"],
                   mask_time_indices=torch.zeros_like(valid)).last_hidden_state
    return masked_mean(hidden, valid)


WAV2VEC2 = register(Backbone(
    name="wav2vec2", modality="audio", model_type="wav2vec2",
    tasks=("wav2vec2", *VIEW_TASKS, "data2vec", "data2vec2", "clip"),
    build=build, pooled=pooled, processor=lambda data, tokenizer=None: wav2vec2_processor(data.audio),
    poolings=("mean",), pipeline_tag="audio-classification",
), __name__)
