"""What the joint-embedding tasks (SimCLR, BYOL, DINO) share, for every modality: the encoder,
decoding each example into augmented views (in ``preprocess``, so in DataLoader workers,
under the loop's per-example seed), pooled features, and eval and export.

| ``task.modality`` | encoder | views | pooling |
| --- | --- | --- | --- |
| ``vision`` | ``ViTModel`` | torchvision v2 crops and colour (``mmssl.augment.vision``); DINO adds small local crops | CLS or patch mean |
| ``text`` | ``BertModel`` (tokenizer trained into the run dir when none is named) | span deletion + token dropout on the ids (``mmssl.augment.text``); 2 views, no local ones | CLS or mean over real tokens |
| ``audio`` | ``Wav2Vec2Model`` | waveform crop, gain, noise, frequency and time masks (``mmssl.augment.audio``); DINO's local views are shorter crops | mean over real frames |

One small helper class per modality holds what differs (as in data2vec); the task classes
only see ``view_batches`` (one batch per view), ``join`` (several views in one forward pass)
and ``features`` (pooled encoder output of a joined batch).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn
from transformers import BertModel, ViTModel, Wav2Vec2Model

from mmssl.augment.audio import AudioViews
from mmssl.augment.text import TextViews
from mmssl.augment.vision import MultiView, ViewConfig, collate_views, view_transform
from mmssl.modalities.audio import (
    AudioAdapter,
    pad_waveforms,
    valid_frames,
    wav2vec2_config,
    wav2vec2_processor,
)
from mmssl.modalities.pooling import masked_mean, pool
from mmssl.modalities.text import (
    TextAdapter,
    bert_config,
    drop_bad_texts,
    pack_dataset,
    pad_batch,
    tokenize_dataset,
)
from mmssl.modalities.vision import VisionAdapter, decode_image, vit_config, vit_processor
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


def _split_views(batch: dict[str, torch.Tensor], key: str) -> list[dict[str, torch.Tensor]]:
    count = sum(1 for k in batch if k.endswith(f"_{key}"))
    return [{key: batch[f"views_{k}_{key}"], "attention_mask": batch[f"views_{k}_attention_mask"]}
            for k in range(count)]


class _Vision:
    """Crops of one kind share a size, so ``views_k`` is a stacked ``[batch, C, H, W]``."""

    column = "image"

    def __init__(self, recipe: Recipe, views: list[ViewConfig]) -> None:
        self.recipe, self.adapter = recipe, VisionAdapter(recipe.data.image)
        self.encoder = ViTModel(vit_config(recipe.model, recipe.data.image), add_pooling_layer=False)
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
        """Local crops are smaller than the position table: the ViT interpolates it for them
        only (at the native size interpolation is an identity that still costs time)."""
        interpolate = pixels.shape[-1] != encoder.config.image_size or pixels.shape[-2] != encoder.config.image_size
        return pool(encoder(pixel_values=pixels, interpolate_pos_encoding=interpolate).last_hidden_state, pooling)

    def embed(self, encoder: nn.Module, batch: dict, pooling: str) -> torch.Tensor:
        return pool(encoder(pixel_values=batch["pixel_values"]).last_hidden_state, pooling)

    def processor(self) -> Any:
        return vit_processor(self.recipe.data.image)


class _Text:
    """Texts are tokenized once in ``prepare``; each view is a padded id batch."""

    column = "text"

    def __init__(self, recipe: Recipe, count: int) -> None:
        self.recipe, self.count = recipe, count
        self.tokenizer = ensure_tokenizer(recipe)
        self.adapter = TextAdapter(recipe.data.text, self.tokenizer)
        self.encoder = BertModel(bert_config(recipe.model, recipe.data.text, self.tokenizer), add_pooling_layer=False)
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
        return _split_views(batch, "input_ids")

    def join(self, views: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return _pad_join(views, "input_ids", self.tokenizer.pad_token_id)

    def features(self, encoder: nn.Module, batch: dict, pooling: str) -> torch.Tensor:
        hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return hidden[:, 0] if pooling == "cls" else masked_mean(hidden, batch["attention_mask"].bool())

    def embed(self, encoder: nn.Module, batch: dict, pooling: str) -> torch.Tensor:
        return self.features(encoder, batch, pooling)

    def processor(self) -> Any:
        return self.tokenizer


class _Audio:
    """Each example is decoded and normalized once (the audio adapter), then each view crops
    and augments that waveform; views are padded with attention masks."""

    column = "audio"

    def __init__(self, recipe: Recipe, views: list[AudioViews]) -> None:
        self.recipe, self.views = recipe, views
        self.adapter = AudioAdapter(recipe.data.audio)
        self.encoder = Wav2Vec2Model(wav2vec2_config(recipe.model, recipe.data.audio))

    def example_lengths(self, dataset: Any) -> list[int]:
        return self.adapter.example_lengths(dataset)

    def views_of(self, example: dict[str, Any]) -> list[torch.Tensor]:
        wave = self.adapter.preprocess(example, train=True)["input_values"]
        return [view(wave) for view in self.views]

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = {}
        for k in range(len(self.views)):
            padded = pad_waveforms([{"input_values": ex["views"][k]} for ex in examples])
            batch.update({f"views_{k}_{key}": value for key, value in padded.items()})
        return batch

    def view_batches(self, batch: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return _split_views(batch, "input_values")

    def join(self, views: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return _pad_join(views, "input_values", 0.0)

    def features(self, encoder: nn.Module, batch: dict, pooling: str) -> torch.Tensor:
        """Mean over the frames of real samples. The explicit empty time mask stops the model
        from drawing its own SpecAugment mask, which would use numpy's unseeded RNG."""
        valid = valid_frames(encoder, batch["attention_mask"])
        hidden = encoder(batch["input_values"], attention_mask=batch["attention_mask"],
                         mask_time_indices=torch.zeros_like(valid)).last_hidden_state
        return masked_mean(hidden, valid)

    def embed(self, encoder: nn.Module, batch: dict, pooling: str) -> torch.Tensor:
        if pooling != "mean":
            raise ValueError(f"eval.pooling={pooling!r}: Wav2Vec2 has no CLS token; use 'mean'")
        return self.features(encoder, batch, pooling)

    def processor(self) -> Any:
        return wav2vec2_processor(self.recipe.data.audio)


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
        if modality == "audio" and self.pooling != "mean":
            raise ValueError("task.pooling='cls': Wav2Vec2 has no CLS token; use 'mean' for audio")
        if modality == "text" and num_local:
            raise ValueError(f"task.num_local_crops={num_local}: local views exist for vision and "
                             "audio only; set task.num_local_crops: 0 for text")
        if modality == "vision":
            self.inputs: Any = _Vision(recipe, [image_view] * 2 + [local_image_view] * num_local)
        elif modality == "text":
            self.inputs = _Text(recipe, 2)
        else:
            audio, rate = cfg.audio_views, recipe.data.audio.sampling_rate
            local = replace(audio, crop_seconds=audio.local_crop_seconds)
            self.inputs = _Audio(recipe, [AudioViews(audio, rate)] * 2 + [AudioViews(local, rate)] * num_local)
        self.modalities = (modality,)
        self.required_columns = (self.inputs.column,)
        self.encoder = self.inputs.encoder

    @property
    def feature_dim(self) -> int:
        return self.encoder.config.hidden_size

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
        return self.inputs.adapter.collate(examples)

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
        return self.inputs.embed(self.encoder, batch, pooling)

    def export_model(self) -> nn.Module:
        """The encoder: the projection heads are training-only, as in SimCLR/BYOL/DINO."""
        return self.encoder

    def processor(self) -> Any:
        return self.inputs.processor()
