"""DINO: self-distillation with no labels (Caron et al., 2021).

The student sees all views (2 global + N local), the EMA teacher only the global ones; the
teacher's outputs are centered (a running mean) and sharpened (a low temperature), and the
student matches them by cross-entropy on every pair of different views. Local views are
small image crops, or short crops for audio; text has the 2 global views only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mmssl.augment.vision import ViewConfig
from mmssl.heads.ssl import DINOHead
from mmssl.losses.dino import dino_loss, update_center
from mmssl.recipe import Recipe
from mmssl.registry import TASKS
from mmssl.tasks.base import TaskOutput
from mmssl.tasks.ema import ema_update, make_teacher, momentum_at
from mmssl.tasks.joint_embedding import JointEmbeddingConfig, JointEmbeddingTask


@dataclass
class DINOConfig(JointEmbeddingConfig):
    """``task:`` fields of DINO (defaults from the paper, head sized down)."""

    out_dim: int = 4096
    hidden_dim: int = 1024
    bottleneck_dim: int = 256
    num_local_crops: int = 4
    local_size: int | None = None
    global_scale: list[float] = field(default_factory=lambda: [0.4, 1.0])
    local_scale: list[float] = field(default_factory=lambda: [0.05, 0.4])
    student_temperature: float = 0.1
    teacher_temperature: float = 0.04
    center_momentum: float = 0.9
    momentum: float = 0.996
    color_jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.num_local_crops < 0:
            raise ValueError(f"num_local_crops must be >= 0, got {self.num_local_crops}")
        if not 0.0 <= self.momentum <= 1.0 or not 0.0 <= self.center_momentum < 1.0:
            raise ValueError("momentum must be in [0, 1] and center_momentum in [0, 1)")
        if min(self.student_temperature, self.teacher_temperature) <= 0:
            raise ValueError("student_temperature and teacher_temperature must be positive")


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
        self.head = DINOHead(self.feature_dim, cfg.hidden_dim, cfg.bottleneck_dim, cfg.out_dim)
        self.teacher_encoder = make_teacher(self.encoder)
        self.teacher_head = make_teacher(self.head)
        self.register_buffer("center", torch.zeros(cfg.out_dim))

    def forward(self, batch: dict[str, torch.Tensor]) -> TaskOutput:
        views = self.view_batches(batch)
        global_crops = self.join(views[:2])
        with torch.no_grad():
            teacher = self.teacher_head(self.features(self.teacher_encoder, global_crops)).chunk(2)
        # crops of one size share a forward pass
        student = list(self.head(self.features(self.encoder, global_crops)).chunk(2))
        if len(views) > 2:
            student += list(self.head(self.features(self.encoder, self.join(views[2:]))).chunk(len(views) - 2))
        cfg = self.cfg
        loss = dino_loss(student, list(teacher), self.center, cfg.student_temperature, cfg.teacher_temperature)
        if self.training:
            self.center.copy_(update_center(self.center, list(teacher), cfg.center_momentum))
        with torch.no_grad():
            probs = torch.softmax((teacher[0] - self.center) / cfg.teacher_temperature, dim=-1)
            entropy = -(probs * probs.clamp(min=1e-12).log()).sum(-1).mean()
        return TaskOutput(loss, {"teacher_entropy": entropy})

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Move the teacher toward the student; momentum rises from ``momentum`` to 1."""
        momentum = momentum_at(step, total_steps, self.cfg.momentum)
        ema_update(self.teacher_encoder, self.encoder, momentum)
        ema_update(self.teacher_head, self.head, momentum)
