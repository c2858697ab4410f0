"""What a backbone is: one transformers encoder family, in one place.

A :class:`Backbone` says how to build the encoder from a recipe (a size preset plus free
``model.config`` overrides), how to read pooled features from a batch, what processor an
export carries, which transformers ``model_type`` its checkpoints have (so
``model.init_from`` can continue pretraining from one), and which tasks accept it. Each
``mmssl/backbones/<family>.py`` registers its entries in ``BACKBONES``; tasks and CLIP
towers look them up by the recipe's ``model.backbone`` (or ``task.towers.<m>.backbone``),
and loading a recipe refuses a backbone its task does not accept (``mmssl.recipe``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmssl.recipe import DataConfig
from mmssl.registry import BACKBONES

if TYPE_CHECKING:
    import torch

#: the backbone a task gets when the recipe names none: today's encoders.
DEFAULTS = {"vision": "vit", "audio": "wav2vec2", "text": "bert"}

#: the tasks that learn from pooled views of one modality (they share ``joint_embedding``).
VIEW_TASKS = ("simclr", "byol", "dino")


@dataclass(frozen=True)
class Backbone:
    """One encoder family: build it, pool its output, and say what serves it."""

    name: str
    modality: str
    #: ``config.model_type`` of its checkpoints (``model.init_from`` picks the backbone by it).
    model_type: str
    #: the task names that accept it (``clip`` means a CLIP tower).
    tasks: tuple[str, ...]
    #: ``build(model, data, tokenizer) -> PreTrainedModel``: a fresh encoder (no weights loaded).
    build: Callable[..., Any]
    #: ``pooled(model, batch, pooling) -> [batch, hidden]`` from a collated (featurized) batch.
    pooled: Callable[[Any, dict[str, torch.Tensor], str], torch.Tensor]
    #: ``processor(data, tokenizer)``: the image processor, feature extractor or tokenizer of an export.
    processor: Callable[..., Any]
    #: poolings it offers (``pooling`` of the tasks and eval); others are an error.
    poolings: tuple[str, ...] = ("cls", "mean")
    #: ``featurize(batch, data) -> batch`` run in the collator: model inputs from the
    #: modality's batch (log-mel spectrograms from padded waveforms); ``None``: as they are.
    featurize: Callable[[dict[str, torch.Tensor], DataConfig], dict[str, torch.Tensor]] | None = None
    #: the Hub pipeline tag of an export whose root is this encoder (``mmssl.hub.formats``):
    #: a transformers pipeline that runs it on raw inputs (audio: ``audio-classification``;
    #: ``feature-extraction`` needs a tokenizer), or ``None`` when none can.
    pipeline_tag: str | None = "feature-extraction"
    #: text backbones: ``masked_lm(model, data, tokenizer)`` builds the MLM model, and
    #: ``lm_head(mlm_model)`` is its head from hidden states to vocabulary logits.
    masked_lm: Callable[..., Any] | None = None
    lm_head: Callable[[Any], Any] | None = None

    def accepts(self, task: str) -> bool:
        return task in self.tasks

    def hidden_size(self, model: Any) -> int:
        """Width of the pooled features."""
        config = model.config
        sizes = getattr(config, "hidden_sizes", None)
        return int(sizes[-1]) if sizes else int(config.hidden_size)

    def check_pooling(self, pooling: str, where: str) -> None:
        if pooling not in self.poolings:
            why = "has no CLS token" if pooling == "cls" else "cannot pool so"
            raise ValueError(f"{where}={pooling!r}: backbone {self.name!r} {why}; use "
                             f"{' or '.join(map(repr, self.poolings))}")


def register(backbone: Backbone, module: str, help: str = "") -> Backbone:
    """Add ``backbone``, defined in ``module`` (where the registry's index says it lives), to
    ``BACKBONES``; its help line and, for recipe validation, its modality and tasks are in
    that index (``mmssl.registry``), which a test keeps equal to these. A plugin's backbone,
    which has no index line, gives its ``mmssl list`` line as ``help``."""
    object.__setattr__(backbone, "__module__", module)
    BACKBONES.register(backbone.name, help=help)(backbone)
    return backbone


def get_backbone(name: str | None, modality: str) -> Backbone:
    """The backbone ``name`` (the modality's default when ``None``), which must serve ``modality``."""
    backbone: Backbone = BACKBONES.get(name or DEFAULTS[modality]).obj
    if backbone.modality != modality:
        raise ValueError(f"model.backbone: {backbone.name!r} is a {backbone.modality} backbone, "
                         f"the task reads {modality}")
    return backbone

