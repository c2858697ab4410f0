"""ResNet (``ResNetModel``): a convolutional image encoder, and the same over log-mel images.

transformers' ResNet stem is fixed (7x7 stride-2 convolution, then 3x3 stride-2 max-pool;
``ResNetConfig`` has no option for the 3x3 stride-1 stem CIFAR papers use), so a 32 px
image is 8x8 after it; the presets keep the four stages and global average pooling, and
``model.config.depths``/``hidden_sizes`` with three entries make a shallower net for small
inputs. Pooled features are the global average (``pooler_output``); a ConvNet has no CLS
token, so ``cls`` and ``mean`` pool alike.

``logmel_resnet`` reads a one-channel log-mel spectrogram (time x mel bins) made in the
collator by the feature extractor its export carries (``mmssl.backbones.spectrogram``).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import ResNetConfig, ResNetModel

from mmssl.backbones.base import VIEW_TASKS, Backbone, register
from mmssl.backbones.spectrogram import featurize_logmel, logmel_extractor
from mmssl.modalities.configs import make_config, preset_fields
from mmssl.modalities.vision import vit_processor
from mmssl.recipe import DataConfig, ModelConfig

#: ``nano`` for tests and CPU recipes; ``resnet18``/``resnet34``/``resnet50`` are the usual nets.
RESNET_PRESETS: dict[str, dict[str, Any]] = {
    "nano": dict(embedding_size=32, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 1, 1], layer_type="basic"),
    "tiny": dict(embedding_size=64, hidden_sizes=[64, 128, 256, 512], depths=[1, 1, 1, 1], layer_type="basic"),
    "resnet18": dict(embedding_size=64, hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2], layer_type="basic"),
    "resnet34": dict(embedding_size=64, hidden_sizes=[64, 128, 256, 512], depths=[3, 4, 6, 3], layer_type="basic"),
    "resnet50": dict(embedding_size=64, hidden_sizes=[256, 512, 1024, 2048], depths=[3, 4, 6, 3],
                     layer_type="bottleneck"),
}


def resnet_config(model: ModelConfig, channels: int) -> ResNetConfig:
    base = {**preset_fields(RESNET_PRESETS, model.preset, "ResNet"), "num_channels": channels}
    return make_config(ResNetConfig, base, model.config)


def pooled_conv(model: Any, batch: dict[str, torch.Tensor], pooling: str) -> torch.Tensor:
    """Global average pool of the last stage, ``[batch, channels]`` (ResNet keeps 1x1 dims)."""
    return model(pixel_values=batch["pixel_values"]).pooler_output.flatten(1)


def _build_image(model: ModelConfig, data: DataConfig, tokenizer: Any = None) -> ResNetModel:
    return ResNetModel(resnet_config(model, data.image.channels))


def _build_logmel(model: ModelConfig, data: DataConfig, tokenizer: Any = None) -> ResNetModel:
    return ResNetModel(resnet_config(model, 1))


def _featurize(batch: dict[str, torch.Tensor], data: DataConfig) -> dict[str, torch.Tensor]:
    """Log-mel ``[batch, frames, mels]`` as a one-channel image ``[batch, 1, frames, mels]``."""
    out = featurize_logmel(batch, data)
    out["pixel_values"] = out.pop("input_values").unsqueeze(1)
    return out


RESNET = register(Backbone(
    name="resnet", modality="vision", model_type="resnet", tasks=VIEW_TASKS,
    build=_build_image, pooled=pooled_conv, processor=lambda data, tokenizer=None: vit_processor(data.image),
    pipeline_tag="image-feature-extraction",
), __name__)

LOGMEL_RESNET = register(Backbone(
    name="logmel_resnet", modality="audio", model_type="resnet", tasks=VIEW_TASKS,
    build=_build_logmel, pooled=pooled_conv, processor=lambda data, tokenizer=None: logmel_extractor(data),
    featurize=_featurize, pipeline_tag=None,  # a spectrogram image: no transformers pipeline makes one
), __name__)
