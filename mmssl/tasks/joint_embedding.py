"""What the joint-embedding tasks (SimCLR, BYOL, DINO) share, for every modality: the encoder,
decoding each example into augmented views (in ``preprocess``, so in DataLoader workers,
under the loop's per-example seed), pooled features, and eval and export.

| ``task.modality`` | encoders (``model.backbone``) | views |
| --- | --- | --- |
| ``vision`` | ``vit`` (default), ``resnet``, ``convnext``, ``convnextv2`` | torchvision v2 crops and colour (``mmssl.augment.vision``); DINO adds small local crops |
| ``text`` | ``bert`` (default), ``modernbert`` (tokenizer trained into the run dir when none is named) | span deletion + token dropout on the ids (``mmssl.augment.text``); 2 views, no local ones |
| ``audio`` | ``wav2vec2`` (default), ``ast``, ``logmel_resnet`` | waveform crop, gain, noise, frequency and time masks (``mmssl.augment.audio``), made into log-mel spectrograms in the collator for the spectrogram encoders; DINO's local views are shorter crops |

Any other modality registered in ``MODALITIES`` works the same way. The modality
(``mmssl.modalities``) decodes, augments, batches and pools; the backbone builds the
encoder. The task classes only see ``view_batches`` (one batch per view), ``join``
(several views in one forward pass) and ``features`` (pooled encoder output of a joined batch).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmssl.augment.vision import ViewConfig
from mmssl.modalities.base import Modality, ViewRequest, build_modality
from mmssl.recipe import Recipe
from mmssl.tasks.base import PretextTask
from mmssl.tasks.configs import JointEmbeddingConfig


class JointEmbeddingTask(PretextTask):
    """Base of the tasks trained on augmented views of each example, for any one modality.

    A subclass passes its image views (``image_view`` twice, then ``num_local`` times
    ``local_image_view``); the modality makes that many views its own way (audio from
    ``task.audio_views``, local ones cropped to ``local_crop_seconds``; text two views and
    no local ones).
    """

    def __init__(self, recipe: Recipe, image_view: ViewConfig, local_image_view: ViewConfig | None = None,
                 num_local: int = 0) -> None:
        super().__init__(recipe)
        cfg: JointEmbeddingConfig = recipe.task
        views = ViewRequest(2, num_local, image_view, local_image_view)
        self.modality: Modality = build_modality(cfg.modality, recipe, backbone=recipe.model.backbone, views=views)
        self.pooling = cfg.pooling or self.modality.default_pooling
        self.backbone_spec = self.modality.backbone
        self.backbone_spec.check_pooling(self.pooling, "task.pooling")
        self.augments_on_device = self.modality.views_on_device
        self.modalities = (cfg.modality,)
        self.required_columns = (self.modality.column,)
        self.encoder = self.modality.build_encoder()

    @property
    def feature_dim(self) -> int:
        return self.modality.hidden_size(self.encoder)

    def prepare_dataset(self, dataset: Any) -> Any:
        dataset, self.prepared_bad_examples = self.modality.prepare(dataset)
        return dataset

    def example_lengths(self, dataset: Any) -> list[int] | None:
        return self.modality.example_lengths(dataset)

    def preprocess(self, example: dict[str, Any], train: bool = True) -> dict[str, Any]:
        if not train:
            return self.modality.preprocess(example, train=False)
        return {"views": self.modality.augment(example)}

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.modality.collate_views(examples)

    def collate_eval(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.modality.collate(examples)

    def view_batches(self, batch: dict[str, torch.Tensor]) -> list[Any]:
        """One batch per view, in the order the task made them (global views first)."""
        return self.modality.view_batches(batch)

    def join(self, views: list[Any]) -> Any:
        """Several view batches as one, so they share a forward pass (split with ``chunk``)."""
        return self.modality.join(views)

    def features(self, encoder: nn.Module, inputs: Any) -> torch.Tensor:
        """Pooled features ``[batch, dim]`` of a (joined) view batch through ``encoder``."""
        return self.modality.pooled(encoder, inputs, self.pooling)

    @property
    def backbone(self) -> nn.Module:
        return self.encoder

    def embed(self, batch: dict[str, torch.Tensor], pooling: str = "mean") -> torch.Tensor:
        self.backbone_spec.check_pooling(pooling, "eval.pooling")
        return self.modality.pooled(self.encoder, batch, pooling)

    def export_model(self) -> nn.Module:
        """The encoder: the projection heads are training-only, as in SimCLR/BYOL/DINO."""
        return self.encoder

    def processor(self) -> Any:
        return self.modality.processor()
