"""What the joint-embedding tasks (SimCLR, BYOL, DINO) share, for every modality: the encoder,
decoding each example into augmented views (in ``preprocess``, so in DataLoader workers,
under the loop's per-example seed), pooled features, and eval and export.

| ``task.modality`` | encoders (``model.backbone``) | views |
| --- | --- | --- |
| ``vision`` | ``vit`` (default), ``resnet``, ``convnext``, ``convnextv2`` | torchvision v2 crops and colour (``mmssl.augment.vision``); DINO adds small local crops |
| ``text`` | ``bert`` (default), ``modernbert`` (tokenizer trained into the run dir when none is named) | span deletion + token dropout on the ids (``mmssl.augment.text``); 2 views, no local ones |
| ``audio`` | ``wav2vec2`` (default), ``ast``, ``logmel_resnet`` | waveform crop, gain, noise, frequency and time masks (``mmssl.augment.audio``), made into log-mel spectrograms in the collator for the spectrogram encoders; DINO's local views are shorter crops |

The backbone (``mmssl.backbones``) builds the encoder and pools its output. One small
helper class per modality holds how views are made and batched (as in data2vec); the task
classes only see ``view_batches`` (one batch per view), ``join`` (several views in one
forward pass) and ``features`` (pooled encoder output of a joined batch).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from mmssl.augment.audio import AudioViews
from mmssl.augment.text import TextViews
from mmssl.augment.vision import MultiView, ViewConfig, collate_views, view_transform
from mmssl.backbones.base import Backbone, get_backbone
from mmssl.modalities.audio import AudioAdapter, pad_waveforms
from mmssl.modalities.text import (
    TextAdapter,
    drop_bad_texts,
    pack_dataset,
    pad_batch,
    tokenize_dataset,
)
from mmssl.modalities.vision import VisionAdapter, decode_image
from mmssl.recipe import Recipe
from mmssl.tasks.base import PretextTask
from mmssl.tasks.configs import JointEmbeddingConfig
from mmssl.tasks.mlm import ensure_tokenizer


def _pad_join(views: list[dict[str, torch.Tensor]], key: str, pad_value: float) -> dict[str, torch.Tensor]:
    """Several padded view batches as one: right-pad to the longest, then stack along batch."""
    width = max(v[key].shape[1] for v in views)

    def padded(t: torch.Tensor, value: float) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    return {key: torch.cat([padded(v[key], pad_value) for v in views]),
            "attention_mask": torch.cat([padded(v["attention_mask"], 0) for v in views])}


def _split_views(batch: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """``views_<k>_<key>`` entries as one ``{key: ...}`` batch per view ``k``."""
    count = len({name.split("_")[1] for name in batch if name.startswith("views_")})
    return [{name[len(f"views_{k}_"):]: value for name, value in batch.items() if name.startswith(f"views_{k}_")}
            for k in range(count)]


class _Vision:
    """Crops of one kind share a size, so ``views_k`` is a stacked ``[batch, C, H, W]``."""

    column = "image"

    def __init__(self, recipe: Recipe, backbone: Backbone, views: list[ViewConfig]) -> None:
        self.recipe, self.backbone, self.adapter = recipe, backbone, VisionAdapter(recipe.data.image)
        self.encoder = backbone.build(recipe.model, recipe.data)
        self.views = MultiView([view_transform(recipe.data.image, v) for v in views])

    def views_of(self, example: dict[str, Any]) -> list[torch.Tensor]:
        return self.views(decode_image(example["image"], self.recipe.data.image.channels))

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return collate_views(examples)

    def view_batches(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [batch[f"views_{k}"] for k in range(sum(1 for k in batch if k.startswith("views_")))]

    def join(self, views: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(views)

    def features(self, encoder: nn.Module, pixels: torch.Tensor, pooling: str) -> torch.Tensor:
        return self.backbone.pooled(encoder, {"pixel_values": pixels}, pooling)

    def collate_eval(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.adapter.collate(examples)


class _Text:
    """Texts are tokenized once in ``prepare``; each view is a padded id batch."""

    column = "text"

    def __init__(self, recipe: Recipe, backbone: Backbone, count: int) -> None:
        self.recipe, self.backbone, self.count = recipe, backbone, count
        self.tokenizer = ensure_tokenizer(recipe)
        self.adapter = TextAdapter(recipe.data.text, self.tokenizer)
        self.encoder = backbone.build(recipe.model, recipe.data, self.tokenizer)
        # [UNK] stands for ordinary text, so views may drop it like any other token
        kept = [i for i in self.tokenizer.all_special_ids if i != self.tokenizer.unk_token_id]
        self.views = TextViews(recipe.task.text_views, kept)

    def prepare(self, dataset: Any) -> tuple[Any, int]:
        dataset, bad = drop_bad_texts(dataset, self.recipe.data.on_bad_example)
        text = self.recipe.data.text
        prepared = pack_dataset if text.packing else tokenize_dataset
        return prepared(dataset, self.tokenizer, text), bad

    def example_lengths(self, dataset: Any) -> list[int]:
        return [len(ids) for ids in dataset["input_ids"]]

    def views_of(self, example: dict[str, Any]) -> list[torch.Tensor]:
        ids = self.adapter.preprocess(example)["input_ids"]
        return [self.views(ids) for _ in range(self.count)]

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = {}
        for k in range(self.count):
            padded = pad_batch([ex["views"][k] for ex in examples], self.tokenizer.pad_token_id)
            batch.update({f"views_{k}_{key}": value for key, value in padded.items()})
        return batch

    def view_batches(self, batch: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return _split_views(batch)

    def join(self, views: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return _pad_join(views, "input_ids", self.tokenizer.pad_token_id)

    def features(self, encoder: nn.Module, batch: dict, pooling: str) -> torch.Tensor:
        return self.backbone.pooled(encoder, batch, pooling)

    def collate_eval(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.adapter.collate(examples)


class _Audio:
    """Each example is decoded and normalized once (the audio adapter), then each view crops
    and augments that waveform; views are padded with attention masks, and spectrogram
    encoders get each padded view batch as fixed-length log-mel features (``featurize``)."""

    column = "audio"

    def __init__(self, recipe: Recipe, backbone: Backbone, views: list[AudioViews]) -> None:
        self.recipe, self.backbone, self.views = recipe, backbone, views
        self.adapter = AudioAdapter(recipe.data.audio)
        self.encoder = backbone.build(recipe.model, recipe.data)

    def _featurized(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        featurize = self.backbone.featurize
        return featurize(batch, self.recipe.data) if featurize else batch

    def example_lengths(self, dataset: Any) -> list[int]:
        return self.adapter.example_lengths(dataset)

    def views_of(self, example: dict[str, Any]) -> list[torch.Tensor]:
        wave = self.adapter.preprocess(example, train=True)["input_values"]
        return [view(wave) for view in self.views]

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = {}
        for k in range(len(self.views)):
            padded = self._featurized(pad_waveforms([{"input_values": ex["views"][k]} for ex in examples]))
            batch.update({f"views_{k}_{key}": value for key, value in padded.items()})
        return batch

    def view_batches(self, batch: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return _split_views(batch)

    def join(self, views: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        if self.backbone.featurize:  # fixed-length spectrograms: stack
            return {key: torch.cat([v[key] for v in views]) for key in views[0]}
        return _pad_join(views, "input_values", 0.0)

    def features(self, encoder: nn.Module, batch: dict, pooling: str) -> torch.Tensor:
        return self.backbone.pooled(encoder, batch, pooling)

    def collate_eval(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self._featurized(self.adapter.collate(examples))


class JointEmbeddingTask(PretextTask):
    """Base of the tasks trained on augmented views of each example, for any one modality.

    A subclass passes its image views (``image_view`` twice, then ``num_local`` times
    ``local_image_view``); audio gets the same count of views from ``task.audio_views``
    (local ones cropped to ``local_crop_seconds``), text two views and no local ones.
    """

    modalities = ("vision", "text", "audio")

    def __init__(self, recipe: Recipe, image_view: ViewConfig, local_image_view: ViewConfig | None = None,
                 num_local: int = 0) -> None:
        super().__init__(recipe)
        cfg: JointEmbeddingConfig = recipe.task
        modality = cfg.modality
        self.pooling = cfg.pooling or ("cls" if modality == "vision" else "mean")
        backbone = get_backbone(recipe.model.backbone, modality)
        backbone.check_pooling(self.pooling, "task.pooling")
        if modality == "text" and num_local:
            raise ValueError(f"task.num_local_crops={num_local}: local views exist for vision and "
                             "audio only; set task.num_local_crops: 0 for text")
        if modality == "vision":
            self.inputs: Any = _Vision(recipe, backbone, [image_view] * 2 + [local_image_view] * num_local)
        elif modality == "text":
            self.inputs = _Text(recipe, backbone, 2)
        else:
            audio, rate = cfg.audio_views, recipe.data.audio.sampling_rate
            local = replace(audio, crop_seconds=audio.local_crop_seconds)
            views = [AudioViews(audio, rate)] * 2 + [AudioViews(local, rate)] * num_local
            self.inputs = _Audio(recipe, backbone, views)
        self.backbone_spec = backbone
        self.modalities = (modality,)
        self.required_columns = (self.inputs.column,)
        self.encoder = self.inputs.encoder

    @property
    def feature_dim(self) -> int:
        return self.backbone_spec.hidden_size(self.encoder)

    def prepare_dataset(self, dataset: Any) -> Any:
        if not hasattr(self.inputs, "prepare"):
            return dataset
        dataset, self.prepared_bad_examples = self.inputs.prepare(dataset)
        return dataset

    def example_lengths(self, dataset: Any) -> list[int] | None:
        lengths = getattr(self.inputs, "example_lengths", None)
        return lengths(dataset) if lengths else None

    def preprocess(self, example: dict[str, Any], train: bool = True) -> dict[str, Any]:
        if not train:
            return self.inputs.adapter.preprocess(example, train=False)
        return {"views": self.inputs.views_of(example)}

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.inputs.collate(examples)

    def collate_eval(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.inputs.collate_eval(examples)

    def view_batches(self, batch: dict[str, torch.Tensor]) -> list[Any]:
        """One batch per view, in the order the task made them (global views first)."""
        return self.inputs.view_batches(batch)

    def join(self, views: list[Any]) -> Any:
        """Several view batches as one, so they share a forward pass (split with ``chunk``)."""
        return self.inputs.join(views)

    def features(self, encoder: nn.Module, inputs: Any) -> torch.Tensor:
        """Pooled features ``[batch, dim]`` of a (joined) view batch through ``encoder``."""
        return self.inputs.features(encoder, inputs, self.pooling)

    @property
    def backbone(self) -> nn.Module:
        return self.encoder

    def embed(self, batch: dict[str, torch.Tensor], pooling: str = "mean") -> torch.Tensor:
        self.backbone_spec.check_pooling(pooling, "eval.pooling")
        return self.backbone_spec.pooled(self.encoder, batch, pooling)

    def export_model(self) -> nn.Module:
        """The encoder: the projection heads are training-only, as in SimCLR/BYOL/DINO."""
        return self.encoder

    def processor(self) -> Any:
        return self.backbone_spec.processor(self.recipe.data, getattr(self.inputs, "tokenizer", None))
