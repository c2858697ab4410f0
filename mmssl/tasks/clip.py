"""CLIP-style alignment of two modalities: two towers, projections, symmetric InfoNCE.

Each tower (``mmssl.modalities.towers``) pools its backbone's output; a projection head
maps it to ``embed_dim``; embeddings are L2-normalised and scored with a learnable logit
scale (1/temperature, capped at ``max_logit_scale`` as in CLIP). Pairs come from a
:class:`~mmssl.data.pairing.Pairing` built from the recipe: one dataset with a column per
modality, a second dataset sharing labels (``pair_with``: each example meets a random
partner of its class, new every epoch), or label names through prompt templates (text
side). Without ``data.text.tokenizer`` a tokenizer is trained on those captions or prompts
into the run dir (as MLM does). See docs/clip.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmssl.data.pairing import Pairing, build_pairing, pairing_texts, pick_caption
from mmssl.heads.projection import ProjectionHead
from mmssl.losses.infonce import clip_logit_scale, clip_loss, init_log_scale
from mmssl.modalities.base import build_modality
from mmssl.modalities.tokenizer import flatten_texts
from mmssl.modalities.towers import Tower, TowerConfig
from mmssl.recipe import Recipe
from mmssl.registry import TASKS
from mmssl.tasks.base import PretextTask, TaskOutput
from mmssl.tasks.configs import ClipConfig


@TASKS.register("clip", config=ClipConfig)
class ClipTask(PretextTask):
    """Contrastive alignment of two modalities (Radford et al., 2021; LiT with a frozen tower)."""

    modalities = ("vision", "text")

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        cfg: ClipConfig = recipe.task
        self.cfg = cfg
        self.modalities = tuple(cfg.modalities)
        text_tower = cfg.towers.get("text", TowerConfig())
        if "text" in self.modalities and not recipe.data.text.tokenizer and text_tower.init_from:
            raise ValueError("data.text.tokenizer: name a tokenizer directory (the one "
                             "task.towers.text.init_from was trained with)")
        # the text modality trains a tokenizer on the captions or prompts when none is named
        inputs = {m: build_modality(m, recipe, corpus=self.tokenizer_texts) for m in self.modalities}
        self.roles = tuple(inputs[m].column for m in self.modalities)
        self.required_columns = (self.roles[0],)
        self.optional_columns = (self.roles[1], "label")  # pairs, class pairing or prompts
        self.towers = nn.ModuleDict({m: Tower(inputs[m], cfg.towers.get(m, TowerConfig())) for m in self.modalities})
        self.projections = nn.ModuleDict(
            {
                m: ProjectionHead(self.towers[m].hidden_size, cfg.embed_dim, cfg.projection,
                                  batch_norm=cfg.projection_batch_norm)
                for m in self.modalities
            }
        )
        self.logit_scale = nn.Parameter(
            torch.tensor(init_log_scale(cfg.temperature)), requires_grad=cfg.learn_temperature
        )
        self.frozen = [m for m in self.modalities if cfg.towers.get(m, TowerConfig()).freeze]
        for m in self.frozen:
            self.towers[m].requires_grad_(False)
        # columns as they are until prepare_dataset chooses (evaluation reads single columns)
        self.pairing: Pairing = Pairing(self.roles)

    # ------------------------------------------------------------------ data

    def tokenizer_texts(self) -> Iterator[str]:
        """What the text tower will read (``mmssl.data.pairing.pairing_texts``), one text at a time."""
        return flatten_texts(pairing_texts(self.recipe))

    def prepare_dataset(self, dataset: Any) -> Any:
        """Choose how pairs are made (``mmssl.data.pairing.build_pairing``); the data stays as it is."""
        self.pairing = build_pairing(self.recipe, self.roles, dataset)
        return dataset

    def preprocess(self, example: dict[str, Any], train: bool = True) -> dict[str, Any]:
        """Model inputs of both modalities (of those present, in evaluation) under ``<modality>.``."""
        out: dict[str, Any] = {}
        # the pair is drawn once per role, the first draw unused: drawing once would change
        # every seeded run's pairs and loss curve (tests/test_default_backbones_unchanged.py)
        values = (self.pairing.values(example, train).get(r) for r in self.roles)
        for modality, value in zip(self.modalities, values):
            if value is None:
                continue
            if modality == "text":
                value = pick_caption(value, train)
            out[modality] = self.towers[modality].preprocess(value, train)
        if not out:
            raise ValueError(f"the example has none of the columns {list(self.roles)}")
        if "label" in example:
            out["label"] = example["label"]
        return out

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        for modality in self.modalities:
            if examples and modality in examples[0]:
                for key, value in self.towers[modality].collate([ex[modality] for ex in examples]).items():
                    if key != "labels":
                        batch[f"{modality}.{key}"] = value
        if examples and "label" in examples[0]:
            batch["labels"] = torch.tensor([ex["label"] for ex in examples])
        return batch

    # ------------------------------------------------------------------ model

    @staticmethod
    def inputs(batch: dict[str, torch.Tensor], modality: str) -> dict[str, torch.Tensor]:
        prefix = f"{modality}."
        return {k[len(prefix):]: v for k, v in batch.items() if k.startswith(prefix)}

    def encode(self, modality: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """L2-normalised embeddings in the shared space from one tower's collated inputs."""
        tower: Tower = self.towers[modality]
        return F.normalize(self.projections[modality](tower(inputs)), dim=-1)

    def scale(self) -> torch.Tensor:
        return clip_logit_scale(self.logit_scale, self.cfg.max_logit_scale)

    def capped_log_scale(self) -> torch.Tensor:
        """The log logit scale as exports store it: detached, capped at ``max_logit_scale``."""
        return self.logit_scale.detach().clamp(max=math.log(self.cfg.max_logit_scale))

    @property
    def masks_same_label(self) -> bool:
        """Leave same-class rows out of the negatives: ``mask``, or ``auto`` when pairs are made by class."""
        if self.cfg.same_label_negatives == "auto":
            return self.pairing.by_class
        return self.cfg.same_label_negatives == "mask"

    def forward(self, batch: dict[str, torch.Tensor]) -> TaskOutput:
        a, b = (self.encode(m, self.inputs(batch, m)) for m in self.modalities)
        scale = self.scale()
        labels = batch.get("labels") if self.masks_same_label else None
        if self.masks_same_label and labels is None:
            raise ValueError("task.same_label_negatives: mask needs a 'label' column in the data")
        loss, accuracy = clip_loss(a, b, scale, gather=self.cfg.gather, labels=labels)
        return TaskOutput(loss, {"logit_scale": scale.detach(), "pair_accuracy": accuracy})

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Clamp the logit scale's log to [0, log(max)] in place, as CLIP does after each step."""
        with torch.no_grad():
            self.logit_scale.clamp_(0.0, math.log(self.cfg.max_logit_scale))

    def train(self, mode: bool = True) -> ClipTask:
        super().train(mode)
        for modality in self.frozen:  # a locked tower keeps its eval behaviour (dropout off)
            self.towers[modality].eval()
        return self

    # ------------------------------------------------------------------ eval and export

    @property
    def backbone(self) -> nn.Module:
        """The first modality's backbone (``towers[m].model`` holds each one)."""
        return self.towers[self.modalities[0]].model

    def embed(self, batch: dict[str, torch.Tensor], pooling: str = "mean") -> torch.Tensor:
        """Pooled tower features of the first modality present in a ``collate_eval`` batch."""
        for modality in self.modalities:
            inputs = self.inputs(batch, modality)
            if inputs:
                return self.towers[modality](inputs)
        raise ValueError(f"the batch holds none of {list(self.modalities)}")

    @property
    def exports_dual_encoder_folder(self) -> bool:
        """Pairs without a transformers dual-encoder class export as mmssl's folder format."""
        return set(self.modalities) != {"vision", "text"}

    def export_model(self) -> Any:
        """Image-text: a transformers ``VisionTextDualEncoderModel`` with these weights."""
        from transformers import VisionTextDualEncoderConfig, VisionTextDualEncoderModel

        if self.exports_dual_encoder_folder:
            raise ValueError(
                f"export_model: {list(self.modalities)} has no transformers class; "
                "`mmssl export` writes it as a dual-encoder folder (docs/hub.md)"
            )
        vision, text = self.towers["vision"], self.towers["text"]
        if (vision.pooling != "pooler" or text.pooling != "pooler" or self.cfg.projection != "linear"
                or self.cfg.projection_batch_norm):
            raise ValueError(
                "export_model: VisionTextDualEncoderModel reads the towers' poolers through linear "
                "projections; train with towers.*.pooling: pooler (or auto), projection: linear "
                "and projection_batch_norm: false"
            )
        config = VisionTextDualEncoderConfig.from_vision_text_configs(
            vision.model.config, text.model.config, projection_dim=self.cfg.embed_dim
        )
        model = VisionTextDualEncoderModel(config, vision_model=vision.model, text_model=text.model)
        model.visual_projection.load_state_dict(self.projections["vision"].net.state_dict())
        model.text_projection.load_state_dict(self.projections["text"].net.state_dict())
        with torch.no_grad():
            model.logit_scale.copy_(self.capped_log_scale())
        return model

    def processor(self) -> Any:
        """Image-text: a ``VisionTextDualEncoderProcessor``; otherwise a dict of per-modality processors."""
        if not self.exports_dual_encoder_folder:
            from transformers import VisionTextDualEncoderProcessor

            return VisionTextDualEncoderProcessor(
                image_processor=self.towers["vision"].processor(), tokenizer=self.towers["text"].processor()
            )
        return {m: self.towers[m].processor() for m in self.modalities}
