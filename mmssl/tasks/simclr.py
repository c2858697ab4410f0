"""SimCLR: two augmented views per example (image, text or audio), a projection MLP,
NT-Xent over the global batch (Chen et al., 2020)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mmssl.augment.vision import ViewConfig
from mmssl.heads.ssl import MLPHead
from mmssl.losses.nt_xent import nt_xent_loss
from mmssl.recipe import (
    JitterStrength,
    OpenUnitFloat,
    PositiveFloat,
    PositiveInt,
    Recipe,
    UnitFloat,
)
from mmssl.registry import TASKS
from mmssl.tasks.base import TaskOutput
from mmssl.tasks.joint_embedding import JointEmbeddingConfig, JointEmbeddingTask


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
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")


@TASKS.register("simclr", config=SimCLRConfig)
class SimCLRTask(JointEmbeddingTask):
    """Contrastive learning between two views of each example."""

    def __init__(self, recipe: Recipe) -> None:
        cfg: SimCLRConfig = recipe.task
        view = ViewConfig(recipe.data.image.size, tuple(cfg.crop_scale), recipe.data.image.horizontal_flip,
                          cfg.color_jitter, blur_prob=cfg.blur_prob)
        super().__init__(recipe, view)
        self.cfg = cfg
        self.projection = MLPHead(self.feature_dim, cfg.projection_hidden_dim, cfg.projection_dim)

    def forward(self, batch: dict[str, torch.Tensor]) -> TaskOutput:
        first, second = self.view_batches(batch)
        z = self.projection(self.features(self.encoder, self.join([first, second])))
        z0, z1 = z.chunk(2)
        loss = nt_xent_loss(z0, z1, self.cfg.temperature)
        with torch.no_grad():
            normed = torch.nn.functional.normalize(z0, dim=1)
            std = normed.std(dim=0).mean()
        return TaskOutput(loss, {"embedding_std": std})
