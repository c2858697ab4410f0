"""Audio Spectrogram Transformer (``ASTModel``): a ViT over log-mel patches (Gong et al., 2021).

It reads the fixed-length log-mel spectrogram of ``mmssl.backbones.spectrogram`` (its
``ASTFeatureExtractor`` is what an export carries); ``max_length`` and ``num_mel_bins``
come from ``data.audio`` so model and extractor agree. ``cls`` pools the mean of the CLS
and distillation tokens (``pooler_output``), ``mean`` the patch tokens.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import ASTConfig, ASTModel

from mmssl.backbones.base import VIEW_TASKS, Backbone, register
from mmssl.backbones.spectrogram import featurize_logmel, logmel_extractor, max_frames
from mmssl.modalities.configs import make_config, preset_fields
from mmssl.recipe import DataConfig, ModelConfig

#: ``nano`` for tests and CPU recipes (non-overlapping 16x16 patches); ``base`` is the paper's.
AST_PRESETS: dict[str, dict[str, Any]] = {
    "nano": dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256,
                 frequency_stride=16, time_stride=16),
    "tiny": dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768,
                 frequency_stride=10, time_stride=10),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 frequency_stride=10, time_stride=10),
}


def build(model: ModelConfig, data: DataConfig, tokenizer: Any = None) -> ASTModel:
    base = {**preset_fields(AST_PRESETS, model.preset, "AST"),
            "max_length": max_frames(data), "num_mel_bins": data.audio.num_mel_bins}
    return ASTModel(make_config(ASTConfig, base, model.config))


def pooled(model: ASTModel, batch: dict[str, torch.Tensor], pooling: str) -> torch.Tensor:
    hidden = model(input_values=batch["input_values"]).last_hidden_state
    return (hidden[:, 0] + hidden[:, 1]) / 2 if pooling == "cls" else hidden[:, 2:].mean(dim=1)


AST = register(Backbone(
    name="ast", modality="audio", model_type="audio-spectrogram-transformer", tasks=VIEW_TASKS,
    build=build, pooled=pooled, processor=lambda data, tokenizer=None: logmel_extractor(data),
    featurize=featurize_logmel, pipeline_tag="audio-classification",
), __name__)
