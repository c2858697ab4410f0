"""DINO: self-distillation with no labels (Caron et al., 2021).

The student sees all views (2 global + N local), the EMA teacher only the global ones; the
teacher's outputs are centered (a running mean) and sharpened (a low temperature), and the
student matches them by cross-entropy on every pair of different views. Local views are
small image crops, or short crops for audio; text has the 2 global views only.

Against collapse early in training, as in the reference: the teacher temperature warms up
(``warmup_teacher_temperature`` to ``teacher_temperature``), the prototypes (the head's last
layer) stay fixed for ``freeze_last_layer_steps``, and ``head_batch_norm`` normalizes the
head's hidden layers over the batch. Small encoders need the last: at init a nano ViT gives
almost the same features for every image, the teacher's centered outputs are then almost
uniform, and matching uniform targets pulls every student output to one point.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmssl.augment.vision import ViewConfig
from mmssl.heads.ssl import DINOHead
from mmssl.losses.dino import dino_loss, update_center
from mmssl.recipe import Recipe
from mmssl.registry import TASKS
from mmssl.tasks.base import TaskOutput
from mmssl.tasks.configs import DINOConfig
from mmssl.tasks.ema import ema_update, make_teacher, momentum_at
from mmssl.tasks.joint_embedding import JointEmbeddingTask


def teacher_temperature_at(step: int, cfg: DINOConfig) -> float:
    """Linear from ``warmup_teacher_temperature`` at step 0 to ``teacher_temperature`` at
    ``warmup_teacher_temperature_steps``, then constant (the reference's schedule, in steps)."""
    warmup = cfg.warmup_teacher_temperature_steps
    if step >= warmup:
        return cfg.teacher_temperature
    start = cfg.warmup_teacher_temperature
    return start + (cfg.teacher_temperature - start) * step / warmup


@TASKS.register("dino", config=DINOConfig)
class DINOTask(JointEmbeddingTask):
    """Student-teacher distillation between the global and local views of each example."""

    def __init__(self, recipe: Recipe) -> None:
        cfg: DINOConfig = recipe.task
        image = recipe.data.image
        flip = image.horizontal_flip
        global_view = ViewConfig(image.size, tuple(cfg.global_scale), flip, cfg.color_jitter, blur_prob=0.5)
        local_view = ViewConfig(cfg.local_size or image.size // 2, tuple(cfg.local_scale), flip,
                                cfg.color_jitter, blur_prob=0.5)
        super().__init__(recipe, global_view, local_view, cfg.num_local_crops)
        self.cfg = cfg
        self.head = DINOHead(self.feature_dim, cfg.hidden_dim, cfg.bottleneck_dim, cfg.out_dim,
                             batch_norm=cfg.head_batch_norm)
        self.teacher_encoder = make_teacher(self.encoder)
        self.teacher_head = make_teacher(self.head)
        self.register_buffer("center", torch.zeros(cfg.out_dim))
        # optimizer steps done: the schedules read it, and checkpoints carry it
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.head.last.parametrizations.weight.original1.register_hook(self._freeze_last_layer)

    def _freeze_last_layer(self, grad: torch.Tensor) -> torch.Tensor:
        """A zero gradient for the prototypes while they are frozen (AdamW then leaves their
        direction as it is; weight decay only rescales the weight-normed matrix)."""
        return torch.zeros_like(grad) if int(self.step) < self.cfg.freeze_last_layer_steps else grad

    def forward(self, batch: dict[str, torch.Tensor]) -> TaskOutput:
        views = self.view_batches(batch)
        global_crops = self.join(views[:2])
        with torch.no_grad():
            teacher_features = self.features(self.teacher_encoder, global_crops)
            teacher = self.teacher_head(teacher_features).chunk(2)
        # crops of one size share a forward pass
        student = list(self.head(self.features(self.encoder, global_crops)).chunk(2))
        if len(views) > 2:
            student += list(self.head(self.features(self.encoder, self.join(views[2:]))).chunk(len(views) - 2))
        cfg = self.cfg
        temperature = teacher_temperature_at(int(self.step), cfg)
        loss = dino_loss(student, list(teacher), self.center, cfg.student_temperature, temperature)
        if self.training:
            self.center.copy_(update_center(self.center, list(teacher), cfg.center_momentum))
        with torch.no_grad():
            probs = torch.softmax((teacher[0] - self.center) / temperature, dim=-1)
            entropy = -(probs * probs.clamp(min=1e-12).log()).sum(-1).mean()
            feature_std = F.normalize(teacher_features, dim=-1).std(dim=0).mean()
        return TaskOutput(loss, {"teacher_entropy": entropy, "teacher_feature_std": feature_std,
                                 "prototypes_used": probs.argmax(-1).unique().numel(),
                                 "teacher_temperature": temperature})

    def on_weights_loaded(self) -> None:
        ema_update(self.teacher_encoder, self.encoder, 0.0)

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Move the teacher toward the student; momentum rises from ``momentum`` to 1."""
        self.step.fill_(step)
        momentum = momentum_at(step, total_steps, self.cfg.momentum)
        ema_update(self.teacher_encoder, self.encoder, momentum)
        ema_update(self.teacher_head, self.head, momentum)
