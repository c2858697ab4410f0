"""data2vec: one objective for images, text and audio (Baevski et al., 2022).

The student encodes a masked input (image patches replaced by ViT's mask token, BERT-masked
tokens, or wav2vec 2.0 span-masked latent frames: each modality's masking, see the
``token_*`` methods of ``mmssl.modalities.base.Modality``), the EMA teacher encodes the
whole input, and a linear head on the student's last layer regresses the average of the
teacher's top-K layer outputs, each instance-normalized, at the masked positions. The
encoders are the modalities' transformers models, unchanged: ``ViTModel``, ``BertModel``,
``Wav2Vec2Model``; export writes the student encoder. Any modality in ``MODALITIES`` that
implements those methods serves; one that does not is a one-line error.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmssl.losses.data2vec import data2vec_loss, data2vec_targets
from mmssl.modalities.base import Modality, build_modality
from mmssl.recipe import Recipe
from mmssl.registry import TASKS
from mmssl.tasks.base import PretextTask, TaskOutput
from mmssl.tasks.configs import Data2VecConfig
from mmssl.tasks.ema import ema_update, make_teacher, momentum_at


@TASKS.register("data2vec", config=Data2VecConfig)
class Data2VecTask(PretextTask):
    """Masked prediction of contextualized teacher representations, for any modality."""

    #: whether the student sees masked positions as the encoder's mask token (1.0) or not at all (2.0)
    MASK_TOKEN = True

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        cfg: Data2VecConfig = recipe.task
        self.cfg = cfg
        self.modalities = (cfg.modality,)
        self.modality: Modality = build_modality(cfg.modality, recipe, backbone=recipe.model.backbone)
        self.required_columns = (self.modality.column,)
        self.encoder = self.modality.token_encoder(self.MASK_TOKEN)
        layers = self.encoder.config.num_hidden_layers
        if cfg.top_k > layers:
            raise ValueError(f"task.top_k={cfg.top_k} is more than the encoder's {layers} layers")
        self.regression_head = self.build_head(self.encoder.config.hidden_size)
        self.teacher = make_teacher(self.encoder)

    def build_head(self, hidden: int) -> nn.Module:
        """What maps the student's states to the targets: one linear layer in data2vec 1.0."""
        return nn.Linear(hidden, hidden)

    def prepare_dataset(self, dataset: Any) -> Any:
        dataset, self.prepared_bad_examples = self.modality.prepare(dataset)
        return dataset

    def example_lengths(self, dataset: Any) -> list[int] | None:
        return self.modality.example_lengths(dataset)

    def preprocess(self, example: dict[str, Any], train: bool = True) -> dict[str, Any]:
        return self.modality.masked_preprocess(example) if train else self.modality.preprocess(example, False)

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.modality.masked_collate(examples, self.cfg)

    def collate_eval(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.modality.collate(examples)

    def forward(self, batch: dict[str, torch.Tensor]) -> TaskOutput:
        mask = self.modality.token_mask(self.encoder, batch, self.cfg)
        with torch.no_grad():
            states, valid = self.modality.token_states(self.teacher, batch)
            targets = data2vec_targets(states, self.cfg.top_k, "instance", valid)
        hidden = self.modality.masked_token_states(self.encoder, batch, mask)
        if not bool(mask.any()):  # nothing masked in this batch: a zero loss keeps the graph
            return TaskOutput(hidden.sum() * 0.0, {"masked_fraction": mask.float().mean()})
        prediction = self.regression_head(hidden[mask])
        loss = data2vec_loss(prediction, targets[mask], self.cfg.loss_beta)
        with torch.no_grad():
            target_std = targets[mask].std(dim=0).mean()
        return TaskOutput(loss, {"masked_fraction": mask.float().mean(), "target_std": target_std})

    def on_weights_loaded(self) -> None:
        ema_update(self.teacher, self.encoder, 0.0)

    def on_step_end(self, step: int, total_steps: int) -> None:
        """EMA of the student encoder; momentum rises from ``momentum`` to ``final_momentum``."""
        momentum = momentum_at(step, total_steps, self.cfg.momentum, self.cfg.final_momentum)
        ema_update(self.teacher, self.encoder, momentum)

    @property
    def backbone(self) -> nn.Module:
        return self.encoder

    def embed(self, batch: dict[str, torch.Tensor], pooling: str = "mean") -> torch.Tensor:
        return self.modality.token_features(self.encoder, batch, pooling)

    def export_model(self) -> nn.Module:
        return self.encoder

    def processor(self) -> Any:
        return self.modality.processor()
