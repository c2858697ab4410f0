"""ConvNeXt and ConvNeXt V2 (``ConvNextModel``, ``ConvNextV2Model``): modern ConvNet image encoders.

The stem is a ``patch_size`` x ``patch_size`` convolution with that stride (4 by default);
``model.config.patch_size: 1`` or ``2`` keeps 32 px CIFAR images large enough for the
three downsampling stages. Pooled features are the layer-normed global average
(``pooler_output``); ``cls`` and ``mean`` pool alike.
"""

from __future__ import annotations

from typing import Any

from transformers import ConvNextConfig, ConvNextModel, ConvNextV2Config, ConvNextV2Model

from mmssl.backbones.base import VIEW_TASKS, Backbone, register
from mmssl.backbones.resnet import pooled_conv
from mmssl.modalities.configs import make_config, preset_fields
from mmssl.modalities.vision import vit_processor
from mmssl.recipe import DataConfig, ModelConfig

#: ``nano`` for tests and CPU recipes; ``tiny``/``small``/``base`` as in the paper (ConvNeXt-T/S/B).
CONVNEXT_PRESETS: dict[str, dict[str, Any]] = {
    "nano": dict(hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 2, 1]),
    "tiny": dict(hidden_sizes=[96, 192, 384, 768], depths=[3, 3, 9, 3]),
    "small": dict(hidden_sizes=[96, 192, 384, 768], depths=[3, 3, 27, 3]),
    "base": dict(hidden_sizes=[128, 256, 512, 1024], depths=[3, 3, 27, 3]),
}


def _builder(config_cls: type, model_cls: type) -> Any:
    def build(model: ModelConfig, data: DataConfig, tokenizer: Any = None) -> Any:
        base = {**preset_fields(CONVNEXT_PRESETS, model.preset, "ConvNeXt"),
                "num_channels": data.image.channels, "image_size": data.image.size}
        stages = len(model.config.get("hidden_sizes", base["hidden_sizes"]))
        return model_cls(make_config(config_cls, base, {"num_stages": stages, **model.config}))

    return build


def _processor(data: DataConfig, tokenizer: Any = None) -> Any:
    return vit_processor(data.image)


CONVNEXT = register(Backbone(
    name="convnext", modality="vision", model_type="convnext", tasks=VIEW_TASKS,
    build=_builder(ConvNextConfig, ConvNextModel), pooled=pooled_conv, processor=_processor,
    pipeline_tag="image-feature-extraction",
), __name__)

CONVNEXT_V2 = register(Backbone(
    name="convnextv2", modality="vision", model_type="convnextv2", tasks=VIEW_TASKS,
    build=_builder(ConvNextV2Config, ConvNextV2Model), pooled=pooled_conv, processor=_processor,
    pipeline_tag="image-feature-extraction",
), __name__)
