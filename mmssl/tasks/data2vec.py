"""data2vec: one objective for images, text and audio (Baevski et al., 2022).

The student encodes a masked input (image patches replaced by ViT's mask token, BERT-masked
tokens, or wav2vec 2.0 span-masked latent frames, each from its modality adapter), the EMA
teacher encodes the whole input, and a linear head on the student's last layer regresses
the average of the teacher's top-K layer outputs, each instance-normalized, at the masked
positions. The encoders are the adapters' transformers models, unchanged: ``ViTModel``,
``BertModel``, ``Wav2Vec2Model``; export writes the student encoder.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import ViTModel, Wav2Vec2Model

from mmssl.backbones.base import get_backbone
from mmssl.losses.data2vec import data2vec_loss, data2vec_targets
from mmssl.modalities.audio import (
    AudioAdapter,
    compute_span_mask,
    frame_lengths,
    num_frames,
    valid_frames,
    wav2vec2_config,
    wav2vec2_processor,
)
from mmssl.modalities.pooling import masked_mean, pool
from mmssl.modalities.text import (
    TextAdapter,
    TokenMasker,
    ensure_tokenizer,
    mask_per_example,
    pack_dataset,
    tokenize_dataset,
)
from mmssl.modalities.vision import VisionAdapter, random_patch_noise, vit_config, vit_processor
from mmssl.recipe import Recipe
from mmssl.registry import TASKS
from mmssl.tasks.base import PretextTask, TaskOutput
from mmssl.tasks.configs import Data2VecConfig
from mmssl.tasks.ema import ema_update, make_teacher, momentum_at


class _Vision:
    """Patches masked by ViT's mask token at a fixed ratio; targets on patch tokens."""

    use_mask_token = True  # data2vec 2.0 drops masked patches instead

    def __init__(self, recipe: Recipe) -> None:
        self.recipe, self.adapter = recipe, VisionAdapter(recipe.data.image)
        self.encoder = ViTModel(vit_config(recipe.model, recipe.data.image), add_pooling_layer=False,
                                use_mask_token=self.use_mask_token)
        self.num_patches = self.encoder.embeddings.patch_embeddings.num_patches

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.adapter.collate(examples)

    def masked(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        pixels = batch["pixel_values"]
        noise = random_patch_noise(pixels.shape[0], self.num_patches, pixels.device)
        count = int(round(self.num_patches * self.recipe.task.mask_ratio))
        return noise.argsort(dim=1).argsort(dim=1) < count

    def student(self, encoder: nn.Module, batch: dict, mask: torch.Tensor) -> torch.Tensor:
        return encoder(pixel_values=batch["pixel_values"], bool_masked_pos=mask).last_hidden_state[:, 1:]

    def teacher(self, encoder: nn.Module, batch: dict) -> tuple[tuple[torch.Tensor, ...], None]:
        states = encoder(pixel_values=batch["pixel_values"], output_hidden_states=True).hidden_states
        return tuple(h[:, 1:] for h in states[1:]), None

    def embed(self, encoder: nn.Module, batch: dict, pooling: str) -> torch.Tensor:
        return pool(encoder(pixel_values=batch["pixel_values"]).last_hidden_state, pooling)

    def processor(self) -> Any:
        return vit_processor(self.recipe.data.image)


class _Text:
    """BERT masking (the text adapter's ``TokenMasker``) drawn in the collator from seeds."""

    masks_in_collator = True  # data2vec 2.0 draws its block masks on the device instead

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.tokenizer = ensure_tokenizer(recipe)
        self.adapter = TextAdapter(recipe.data.text, self.tokenizer)
        if self.masks_in_collator:
            self.masker = TokenMasker(self.tokenizer, recipe.task.mask_prob)
        # BERT, or another text backbone data2vec accepts (model.backbone: modernbert)
        self.encoder = get_backbone(recipe.model.backbone, "text").build(recipe.model, recipe.data, self.tokenizer)

    def prepare(self, dataset: Any) -> Any:
        text = self.recipe.data.text
        if text.packing:
            return pack_dataset(dataset, self.tokenizer, text)
        return tokenize_dataset(dataset, self.tokenizer, text)

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.adapter.collate(examples)
        if "mask_seed" in examples[0]:
            seeds = [ex["mask_seed"] for ex in examples]
            batch["masked_input_ids"], labels = mask_per_example(
                self.masker, batch["input_ids"], batch["attention_mask"], seeds
            )
            batch["target_mask"] = labels != -100
        return batch

    def masked(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["target_mask"]

    def student(self, encoder: nn.Module, batch: dict, mask: torch.Tensor) -> torch.Tensor:
        return encoder(input_ids=batch["masked_input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state

    def teacher(self, encoder: nn.Module, batch: dict) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        out = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
        return out.hidden_states[1:], batch["attention_mask"].bool()

    def embed(self, encoder: nn.Module, batch: dict, pooling: str) -> torch.Tensor:
        hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return hidden[:, 0] if pooling == "cls" else masked_mean(hidden, batch["attention_mask"].bool())

    def processor(self) -> Any:
        return self.tokenizer


class _Audio:
    """wav2vec 2.0 span masks over latent frames (the audio adapter's ``compute_span_mask``)."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe, self.adapter = recipe, AudioAdapter(recipe.data.audio)
        self.encoder = Wav2Vec2Model(wav2vec2_config(recipe.model, recipe.data.audio))

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.adapter.collate(examples)

    def masked(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        cfg = self.recipe.task
        attention = batch["attention_mask"]
        lengths, total = frame_lengths(self.encoder, attention), num_frames(self.encoder, attention.shape[1])
        return compute_span_mask(lengths, cfg.mask_prob, cfg.mask_length, total, cfg.min_masks)

    def _run(self, encoder: nn.Module, batch: dict, mask: torch.Tensor, **kwargs: Any) -> Any:
        return encoder(batch["input_values"], attention_mask=batch["attention_mask"], mask_time_indices=mask, **kwargs)

    def student(self, encoder: nn.Module, batch: dict, mask: torch.Tensor) -> torch.Tensor:
        return self._run(encoder, batch, mask).last_hidden_state

    def teacher(self, encoder: nn.Module, batch: dict) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        valid = valid_frames(self.encoder, batch["attention_mask"])
        # an explicit empty mask: without one the model would draw its own SpecAugment mask
        out = self._run(encoder, batch, torch.zeros_like(valid), output_hidden_states=True)
        return out.hidden_states[1:], valid

    def embed(self, encoder: nn.Module, batch: dict, pooling: str) -> torch.Tensor:
        if pooling != "mean":
            raise ValueError(f"eval.pooling={pooling!r}: Wav2Vec2 has no CLS token; use 'mean'")
        valid = valid_frames(self.encoder, batch["attention_mask"])
        return masked_mean(self._run(encoder, batch, torch.zeros_like(valid)).last_hidden_state, valid)

    def processor(self) -> Any:
        return wav2vec2_processor(self.recipe.data.audio)


_MODALITIES = {"vision": _Vision, "text": _Text, "audio": _Audio}
_COLUMNS = {"vision": "image", "text": "text", "audio": "audio"}


@TASKS.register("data2vec", config=Data2VecConfig)
class Data2VecTask(PretextTask):
    """Masked prediction of contextualized teacher representations, for any modality."""

    modalities = ("vision", "text", "audio")
    #: modality name -> the inputs class that builds the encoder, masks and teacher states
    INPUTS: dict[str, type] = _MODALITIES

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        cfg: Data2VecConfig = recipe.task
        self.cfg = cfg
        self.modalities = (cfg.modality,)
        self.required_columns = (_COLUMNS[cfg.modality],)
        self.inputs = self.INPUTS[cfg.modality](recipe)
        self.encoder = self.inputs.encoder
        layers = self.encoder.config.num_hidden_layers
        if cfg.top_k > layers:
            raise ValueError(f"task.top_k={cfg.top_k} is more than the encoder's {layers} layers")
        self.regression_head = self.build_head(self.encoder.config.hidden_size)
        self.teacher = make_teacher(self.encoder)

    def build_head(self, hidden: int) -> nn.Module:
        """What maps the student's states to the targets: one linear layer in data2vec 1.0."""
        return nn.Linear(hidden, hidden)

    def prepare_dataset(self, dataset: Any) -> Any:
        prepare = getattr(self.inputs, "prepare", None)
        return prepare(dataset) if prepare else dataset

    def example_lengths(self, dataset: Any) -> list[int] | None:
        if self.cfg.modality == "audio":
            return self.inputs.adapter.example_lengths(dataset)
        if self.cfg.modality == "text":
            return [len(ids) for ids in dataset["input_ids"]]
        return None

    def preprocess(self, example: dict[str, Any], train: bool = True) -> dict[str, Any]:
        out = self.inputs.adapter.preprocess(example, train)
        if train and self.cfg.modality == "text":  # drawn under the loop's per-example seed
            out["mask_seed"] = int(torch.randint(0, 2**62, ()))
        return out

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.inputs.collate(examples)

    def collate_eval(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.inputs.adapter.collate(examples)

    def forward(self, batch: dict[str, torch.Tensor]) -> TaskOutput:
        mask = self.inputs.masked(batch)
        with torch.no_grad():
            states, valid = self.inputs.teacher(self.teacher, batch)
            targets = data2vec_targets(states, self.cfg.top_k, "instance", valid)
        hidden = self.inputs.student(self.encoder, batch, mask)
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
        return self.inputs.embed(self.encoder, batch, pooling)

    def export_model(self) -> nn.Module:
        return self.encoder

    def processor(self) -> Any:
        return self.inputs.processor()
