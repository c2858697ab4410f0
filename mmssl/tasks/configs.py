"""The ``task:`` section of every task: plain dataclasses, importable without torch.

Recipe validation (``mmssl.recipe``) reads these through the task registry's index, so a
misspelled key is reported without importing torch, transformers or datasets; the task
modules (``mmssl.tasks.<name>``) import their config from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from mmssl.augment.configs import AudioViewConfig, TextViewConfig
from mmssl.modalities.configs import TowerConfig
from mmssl.recipe import (
    DataConfig,
    HalfOpenUnitFloat,
    InnerUnitFloat,
    JitterStrength,
    NonNegativeFloat,
    NonNegativeInt,
    OpenUnitFloat,
    PositiveFloat,
    PositiveInt,
    Range,
    TaskConfig,
    UnitFloat,
)
from mmssl.registry import MODALITIES


def check_modality(name: str, key: str = "modality") -> None:
    """``name`` must be a registered modality (read from the index: no torch import)."""
    if name not in MODALITIES:
        raise ValueError(f"{key}: unknown modality {name!r} (known: {', '.join(MODALITIES.names())})")


@dataclass
class JointEmbeddingConfig(TaskConfig):
    """``task:`` fields every joint-embedding task has."""

    modality: str = "vision"                         # a name in MODALITIES (`mmssl list modalities`)
    pooling: Literal["cls", "mean"] | None = None   # None: the modality's (cls for vision, mean otherwise)
    audio_views: AudioViewConfig = field(default_factory=AudioViewConfig)
    text_views: TextViewConfig = field(default_factory=TextViewConfig)

    def __post_init__(self) -> None:
        check_modality(self.modality)


@dataclass
class SimCLRConfig(JointEmbeddingConfig):
    """``task:`` fields of SimCLR (``modality``, ``pooling`` and the audio/text views are shared)."""

    temperature: PositiveFloat = 0.5
    projection_dim: PositiveInt = 128
    projection_hidden_dim: PositiveInt = 512
    crop_scale: list[OpenUnitFloat] = field(default_factory=lambda: [0.08, 1.0])
    color_jitter: JitterStrength = 0.5
    blur_prob: UnitFloat = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")


@dataclass
class BYOLConfig(JointEmbeddingConfig):
    """``task:`` fields of BYOL (``modality``, ``pooling`` and the audio/text views are shared)."""

    projection_dim: PositiveInt = 256
    hidden_dim: PositiveInt = 1024
    momentum: UnitFloat = 0.99
    crop_scale: list[OpenUnitFloat] = field(default_factory=lambda: [0.08, 1.0])
    color_jitter: JitterStrength = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {self.momentum}")


@dataclass
class DINOConfig(JointEmbeddingConfig):
    """``task:`` fields of DINO (defaults from the paper, head sized down)."""

    out_dim: PositiveInt = 4096
    hidden_dim: PositiveInt = 1024
    bottleneck_dim: PositiveInt = 256
    num_local_crops: NonNegativeInt = 4
    local_size: PositiveInt | None = None
    global_scale: list[OpenUnitFloat] = field(default_factory=lambda: [0.4, 1.0])
    local_scale: list[OpenUnitFloat] = field(default_factory=lambda: [0.05, 0.4])
    student_temperature: PositiveFloat = 0.1
    teacher_temperature: PositiveFloat = 0.04
    warmup_teacher_temperature: PositiveFloat = 0.04
    warmup_teacher_temperature_steps: NonNegativeInt = 0
    freeze_last_layer_steps: NonNegativeInt = 0
    head_batch_norm: bool = False
    center_momentum: HalfOpenUnitFloat = 0.9
    momentum: UnitFloat = 0.996
    color_jitter: JitterStrength = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_local_crops < 0:
            raise ValueError(f"num_local_crops must be >= 0, got {self.num_local_crops}")
        if not 0.0 <= self.momentum <= 1.0 or not 0.0 <= self.center_momentum < 1.0:
            raise ValueError("momentum must be in [0, 1] and center_momentum in [0, 1)")
        if min(self.student_temperature, self.teacher_temperature, self.warmup_teacher_temperature) <= 0:
            raise ValueError("student_temperature, teacher_temperature and warmup_teacher_temperature "
                             "must be positive")
        if min(self.warmup_teacher_temperature_steps, self.freeze_last_layer_steps) < 0:
            raise ValueError("warmup_teacher_temperature_steps and freeze_last_layer_steps must be >= 0")


@dataclass
class MAEConfig(TaskConfig):
    """``task:`` fields of MAE."""

    mask_ratio: HalfOpenUnitFloat = 0.75
    norm_pix_loss: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")


@dataclass
class MLMConfig(TaskConfig):
    """``task:`` fields of MLM."""

    architecture: Literal["bert", "roberta"] = "bert"   # model.backbone, when set, wins (e.g. modernbert)
    mask_prob: InnerUnitFloat = 0.15
    replace_prob: UnitFloat = 0.8
    random_prob: UnitFloat = 0.1
    whole_word_mask: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in (0, 1), got {self.mask_prob}")
        if min(self.replace_prob, self.random_prob) < 0 or self.replace_prob + self.random_prob > 1:
            raise ValueError("replace_prob and random_prob must be >= 0 and sum to at most 1")


@dataclass
class TeacherTargetsConfig(TaskConfig):
    """``task:`` fields data2vec 1.0 and 2.0 share: the EMA teacher and its targets."""

    modality: str = "vision"             # a name in MODALITIES whose modality serves masked prediction
    top_k: PositiveInt = 8
    momentum: UnitFloat = 0.999
    final_momentum: UnitFloat = 0.9999
    loss_beta: NonNegativeFloat = 0.0   # 0: mean squared error, > 0: smooth L1 with this beta


@dataclass
class Data2VecConfig(TeacherTargetsConfig):
    """``task:`` fields of data2vec (defaults from the paper's base models)."""

    mask_ratio: InnerUnitFloat = 0.6       # vision: fraction of patches masked
    mask_prob: OpenUnitFloat = 0.15       # text: BERT token masking; audio: span start probability
    mask_length: PositiveInt = 10         # audio: frames per span
    min_masks: NonNegativeInt = 2            # audio: spans per example at least

    def __post_init__(self) -> None:
        check_modality(self.modality)
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        if not 0.0 <= self.momentum <= self.final_momentum <= 1.0:
            raise ValueError("need 0 <= momentum <= final_momentum <= 1")
        if not 0.0 < self.mask_ratio < 1.0 or not 0.0 < self.mask_prob <= 1.0:
            raise ValueError("mask_ratio must be in (0, 1) and mask_prob in (0, 1]")
        if self.loss_beta < 0:
            raise ValueError(f"loss_beta must be >= 0, got {self.loss_beta}")


@dataclass
class Data2Vec2Config(TeacherTargetsConfig):
    """``task:`` fields of data2vec 2.0 (defaults from the paper's base image model)."""

    momentum: UnitFloat = 0.9998
    final_momentum: UnitFloat = 0.99999
    mask_ratio: InnerUnitFloat = 0.8    # fraction of real positions the student does not see
    mask_block: PositiveInt = 3         # side of kept image blocks (patches); span of tokens/frames
    num_masks: PositiveInt = 8          # masks per example sharing one teacher pass
    decoder_dim: PositiveInt = 384
    decoder_layers: PositiveInt = 4
    decoder_kernel: PositiveInt = 3
    decoder_groups: PositiveInt = 16

    def __post_init__(self) -> None:
        check_modality(self.modality)
        if self.momentum > self.final_momentum:
            raise ValueError("need momentum <= final_momentum")
        if self.decoder_kernel % 2 == 0:
            raise ValueError(f"decoder_kernel must be odd (same-size convolutions), got {self.decoder_kernel}")
        if self.decoder_dim % self.decoder_groups:
            raise ValueError(f"decoder_dim={self.decoder_dim} is not a multiple of "
                             f"decoder_groups={self.decoder_groups}")


@dataclass
class Wav2Vec2TaskConfig(TaskConfig):
    """``task:`` fields of wav2vec 2.0 pretraining (defaults from the paper's BASE model)."""

    mask_prob: OpenUnitFloat = 0.65
    mask_length: PositiveInt = 10
    min_masks: NonNegativeInt = 2
    num_negatives: PositiveInt = 100
    contrastive_temperature: PositiveFloat = 0.1
    diversity_loss_weight: NonNegativeFloat = 0.1
    max_gumbel_temperature: PositiveFloat = 2.0
    min_gumbel_temperature: PositiveFloat = 0.5
    gumbel_temperature_decay: OpenUnitFloat = 0.999995

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_prob <= 1.0:
            raise ValueError(f"mask_prob must be in (0, 1], got {self.mask_prob}")
        if self.mask_length < 1 or self.num_negatives < 1 or self.min_masks < 0:
            raise ValueError("mask_length and num_negatives must be at least 1, min_masks at least 0")
        if not 0.0 < self.min_gumbel_temperature <= self.max_gumbel_temperature:
            raise ValueError("need 0 < min_gumbel_temperature <= max_gumbel_temperature")
        if not 0.0 < self.gumbel_temperature_decay <= 1.0:
            raise ValueError(f"gumbel_temperature_decay must be in (0, 1], got {self.gumbel_temperature_decay}")


@dataclass
class ClipConfig(TaskConfig):
    """``task:`` fields of CLIP-style alignment."""

    modalities: list[str] = field(default_factory=lambda: ["vision", "text"])
    towers: dict[str, TowerConfig] = field(default_factory=dict)
    embed_dim: PositiveInt = 128
    projection: Literal["linear", "mlp"] = "linear"
    projection_batch_norm: bool = False
    temperature: PositiveFloat = 0.07
    learn_temperature: bool = True
    max_logit_scale: Annotated[float, Range(1, low_open=True)] = 100.0
    gather: bool = True
    same_label_negatives: Literal["auto", "keep", "mask"] = "auto"
    pair_with: DataConfig | None = None
    prompts: list[str] = field(default_factory=lambda: ["a photo of a {name}."])
    class_names: list[str] | None = None

    def __post_init__(self) -> None:
        if len(set(self.modalities)) != 2 or len(self.modalities) != 2:
            raise ValueError(
                f"modalities must be two different modalities, e.g. [vision, text], got {self.modalities}"
            )
        for name in self.modalities:
            check_modality(name, "modalities")
        extra = set(self.towers) - set(self.modalities)
        if extra:
            raise ValueError(f"towers: {sorted(extra)} not among modalities {self.modalities}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.max_logit_scale <= 1:
            raise ValueError(f"max_logit_scale must be above 1, got {self.max_logit_scale}")
