"""What an export is made of and how transformers users load it, in one place.

``export_parts(task)`` decides the folder's models: the root (what ``AutoModel``, a Hub id
and the card's ``pipeline_tag`` load), ``encoder/`` (the backbone alone) and, when the
pretraining model cannot sit at the root, ``pretraining/``. MAE is that case: ``AutoModel``
on a ViT-MAE config builds ``ViTMAEModel``, which masks 75% of the patches and shuffles the
rest on every call (even at ``mask_ratio=0`` it shuffles), so its root is the encoder
converted to a plain ``ViTModel`` and ``ViTMAEForPreTraining`` moves to ``pretraining/``.

The pipeline tag of an encoder at the root comes from its backbone's entry in
``mmssl.backbones`` (``Backbone.pipeline_tag``; the modality's default backbone for tasks
that name none). ``FORMATS`` holds, per modality, the Auto class that reads the processor
files and the code the card shows; a backbone whose outputs differ from its modality's (a
pooled CNN, AST's two CLS tokens) has an entry under its name. What depends on the model
itself is read from it: a head that serves a pipeline of its own (masked LM: ``fill-mask``;
an image-text dual encoder: ``zero-shot-image-classification``) and a pooler the backbone
was built without (then loading passes ``add_pooling_layer=False``, so transformers
neither reports nor randomly initialises one).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn
from transformers import PreTrainedModel, ViTModel
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    MODEL_FOR_ZERO_SHOT_IMAGE_CLASSIFICATION_MAPPING_NAMES,
)
from transformers.processing_utils import ProcessorMixin
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from mmssl.backbones.base import Backbone, get_backbone
from mmssl.modalities.vision import as_vit


@dataclass(frozen=True)
class ModalityFormat:
    """How a plain encoder of one modality (or backbone) is used from transformers."""

    processor_loader: str      # the Auto class that reads the processor files
    processor_call: str        # the processor's arguments in the card's snippet
    pipeline_call: str         # the pipeline's arguments in the card's snippet
    pooled: dict[str, str]     # pooling -> expression over ``hidden``, ``outputs``, ``inputs``
    given: str                 # the snippet's input variables, as a comment
    forward: str = "encoder(**inputs)"


_MASKED_MEAN = '(hidden * inputs["attention_mask"][..., None]).sum(1) / inputs["attention_mask"].sum(1, keepdim=True)'

FORMATS: dict[str, ModalityFormat] = {
    "vision": ModalityFormat(
        "AutoImageProcessor", "images=image", "image",
        {"mean": "hidden[:, 1:].mean(dim=1)", "cls": "hidden[:, 0]", "pooler": "outputs.pooler_output"},
        "image: a PIL image",
    ),
    "text": ModalityFormat(
        "AutoTokenizer", "text", "text",
        {"mean": _MASKED_MEAN, "cls": "hidden[:, 0]", "pooler": "outputs.pooler_output"},
        "text: a string",
    ),
    "audio": ModalityFormat(
        "AutoFeatureExtractor", "waveform, sampling_rate=sr", '{"raw": waveform, "sampling_rate": sr}',
        {"mean": "hidden.mean(dim=1)"},
        "waveform: a 1-D float array sampled at sr Hz, the model's rate (processor.sampling_rate)",
    ),
}
_CONV_POOLED = {"mean": "outputs.pooler_output.flatten(1)", "cls": "outputs.pooler_output.flatten(1)"}
FORMATS.update({
    "resnet": replace(FORMATS["vision"], pooled=_CONV_POOLED),
    "convnext": replace(FORMATS["vision"], pooled=_CONV_POOLED),
    "convnextv2": replace(FORMATS["vision"], pooled=_CONV_POOLED),
    "ast": replace(FORMATS["audio"], pooled={"mean": "hidden[:, 2:].mean(dim=1)",
                                             "cls": "(hidden[:, 0] + hidden[:, 1]) / 2"}),
    # a ResNet over the log-mel spectrogram as a one-channel image
    "logmel_resnet": replace(FORMATS["audio"], pooled=_CONV_POOLED,
                             forward='encoder(pixel_values=inputs["input_values"].unsqueeze(1))'),
})

#: a modality without an entry (a plugin's): its processor read as a feature extractor, a mean.
GENERIC_FORMAT = ModalityFormat(
    "AutoFeatureExtractor", "values", "values", {"mean": "hidden.mean(dim=1)"},
    "values: one example's cell, as in the data set",
)

#: models whose class serves a pipeline of its own: transformers' mappings, plus the image-text
#: dual encoder, which its zero-shot pipeline runs (logging that it is "not supported").
_HEAD_PIPELINES = (
    (set(MODEL_FOR_MASKED_LM_MAPPING_NAMES.values()), "fill-mask"),
    (set(MODEL_FOR_ZERO_SHOT_IMAGE_CLASSIFICATION_MAPPING_NAMES.values()) | {"VisionTextDualEncoderModel"},
     "zero-shot-image-classification"),
)

def vit_mae_encoder_to_vit(encoder: PreTrainedModel) -> ViTModel:
    """A mask-free ``ViTModel`` (no pooler: MAE trains none) with the MAE encoder's weights."""
    return as_vit(encoder, pooler=False).eval()


#: backbones that need converting before they make a good standalone encoder, by class name.
ENCODER_CONVERTERS: dict[str, Callable[[PreTrainedModel], PreTrainedModel]] = {
    "ViTMAEModel": vit_mae_encoder_to_vit,
}


def standalone_encoder(backbone: nn.Module) -> PreTrainedModel:
    """The backbone as a transformers model that ``AutoModel`` reloads as is."""
    if not isinstance(backbone, PreTrainedModel):
        raise ValueError(f"the task's backbone is a {type(backbone).__name__}, not a transformers model")
    convert = ENCODER_CONVERTERS.get(type(backbone).__name__)
    return convert(backbone) if convert else backbone


def load_kwargs(model: nn.Module) -> dict[str, Any]:
    """``from_pretrained`` arguments that rebuild ``model`` as saved: without the pooler it lacks."""
    accepts = "add_pooling_layer" in inspect.signature(type(model).__init__).parameters
    return {"add_pooling_layer": False} if accepts and getattr(model, "pooler", None) is None else {}


def pipeline_tag(model: nn.Module, backbone: Backbone) -> str | None:
    """The Hub pipeline tag whose transformers pipeline runs on a folder holding ``model``."""
    name = type(model).__name__
    for names, tag in _HEAD_PIPELINES:
        if name in names:
            return tag
    return backbone.pipeline_tag


def backbone_of(task: Any) -> Backbone:
    """The task's backbone entry, or its modality's default for tasks that name none."""
    return getattr(task, "backbone_spec", None) or get_backbone(None, task.modalities[0])


@dataclass
class ExportParts:
    """The models of one export folder and its processor."""

    root: PreTrainedModel
    encoder: PreTrainedModel
    pretraining: PreTrainedModel | None
    processor: Any
    backbone: Backbone

    @property
    def pipeline_tag(self) -> str | None:
        return pipeline_tag(self.root, self.backbone)

    @property
    def format(self) -> ModalityFormat:
        return FORMATS.get(self.backbone.name) or FORMATS.get(self.backbone.modality, GENERIC_FORMAT)


def export_parts(task: Any) -> ExportParts:
    """Root, ``encoder/`` and ``pretraining/`` models of ``task``'s export (see the module doc)."""
    model, encoder = task.export_model(), standalone_encoder(task.backbone)
    converted = encoder is not task.backbone
    return ExportParts(
        root=encoder if converted else model, encoder=encoder, pretraining=model if converted else None,
        processor=task.processor(), backbone=backbone_of(task),
    )


def save_processor(processor: Any, folder: Path) -> None:
    """Save the processor; a lone image processor or feature extractor also names its class
    as ``processor_class``, so ``AutoProcessor`` returns it instead of guessing a processor
    from the model type (for Wav2Vec2 one that needs a tokenizer the export has not)."""
    processor.save_pretrained(folder)
    if isinstance(processor, (PreTrainedTokenizerBase, ProcessorMixin)):
        return
    path = Path(folder) / "preprocessor_config.json"
    config = json.loads(path.read_text())
    config["processor_class"] = type(processor).__name__
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
