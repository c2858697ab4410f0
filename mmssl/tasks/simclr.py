"""SimCLR: two augmented views per example (image, text or audio), a projection MLP,
NT-Xent over the global batch (Chen et al., 2020)."""

from __future__ import annotations

import torch

from mmssl.augment.vision import ViewConfig
from mmssl.heads.ssl import MLPHead
from mmssl.losses.nt_xent import nt_xent_loss
from mmssl.recipe import Recipe
from mmssl.registry import TASKS
from mmssl.tasks.base import TaskOutput
from mmssl.tasks.configs import SimCLRConfig
from mmssl.tasks.joint_embedding import JointEmbeddingTask


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
