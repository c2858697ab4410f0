"""BYOL: an online network predicts the EMA target network's projection of another view
(Grill et al., 2020); no negatives. Images, text or audio."""

from __future__ import annotations

import torch

from mmssl.augment.vision import ViewConfig
from mmssl.heads.ssl import MLPHead
from mmssl.losses.byol import byol_loss
from mmssl.recipe import Recipe
from mmssl.registry import TASKS
from mmssl.tasks.base import TaskOutput
from mmssl.tasks.configs import BYOLConfig
from mmssl.tasks.ema import ema_update, make_teacher, momentum_at
from mmssl.tasks.joint_embedding import JointEmbeddingTask


@TASKS.register("byol", config=BYOLConfig)
class BYOLTask(JointEmbeddingTask):
    """Online encoder + projector + predictor against an EMA target encoder + projector."""

    def __init__(self, recipe: Recipe) -> None:
        cfg: BYOLConfig = recipe.task
        view = ViewConfig(recipe.data.image.size, tuple(cfg.crop_scale), recipe.data.image.horizontal_flip,
                          cfg.color_jitter)
        super().__init__(recipe, view)
        self.cfg = cfg
        self.projector = MLPHead(self.feature_dim, cfg.hidden_dim, cfg.projection_dim)
        self.predictor = MLPHead(cfg.projection_dim, cfg.hidden_dim, cfg.projection_dim)
        self.target_encoder = make_teacher(self.encoder)
        self.target_projector = make_teacher(self.projector)

    def forward(self, batch: dict[str, torch.Tensor]) -> TaskOutput:
        first, second = self.view_batches(batch)
        both = self.join([first, second])
        p0, p1 = self.predictor(self.projector(self.features(self.encoder, both))).chunk(2)
        with torch.no_grad():
            z0, z1 = self.target_projector(self.features(self.target_encoder, both)).chunk(2)
        loss = (byol_loss(p0, z1) + byol_loss(p1, z0)) / 2
        return TaskOutput(loss)

    def on_weights_loaded(self) -> None:
        ema_update(self.target_encoder, self.encoder, 0.0)

    def on_step_end(self, step: int, total_steps: int) -> None:
        momentum = momentum_at(step, total_steps, self.cfg.momentum)
        ema_update(self.target_encoder, self.encoder, momentum)
        ema_update(self.target_projector, self.projector, momentum)
