"""wav2vec 2.0: mask spans of latent speech frames and pick their quantized targets out of
distractors from the same utterance (Baevski et al., 2020).

The model is transformers' ``Wav2Vec2ForPreTraining``: a convolutional feature encoder over
the raw waveform, a transformer context network, and a Gumbel-softmax product quantizer
whose codes are the targets. The task draws what the model does not: the span masks
(per example from its true length, so padding is never masked) and the K distractors of each
masked frame (uniformly from the other masked frames of the same utterance, as in the
paper, so never the positive and never padding). It also anneals the Gumbel temperature
from ``max_gumbel_temperature`` by ``gumbel_temperature_decay`` per step down to
``min_gumbel_temperature``, and reports the losses per masked frame.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2ForPreTraining

from mmssl.modalities.audio import (
    AudioAdapter,
    compute_span_mask,
    frame_lengths,
    num_frames,
    valid_frames,
    wav2vec2_config,
    wav2vec2_processor,
)
from mmssl.modalities.pooling import masked_mean
from mmssl.recipe import Recipe
from mmssl.registry import TASKS
from mmssl.tasks.base import PretextTask, TaskOutput
from mmssl.tasks.configs import Wav2Vec2TaskConfig


def sample_negatives(
    mask: torch.Tensor, num_negatives: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """For each frame, ``num_negatives`` other masked frames of the same row, uniformly.

    Returns indices into the row ``[batch, frames, num_negatives]``. A masked frame never
    gets itself, unless its row has a single masked frame (then all its distractors are
    itself, which ``Wav2Vec2ForPreTraining`` scores as -inf, so it adds no loss). Entries of
    unmasked frames are valid masked positions too but carry no loss.
    """
    batch, frames = mask.shape
    counts = mask.sum(dim=1)
    # masked positions first (in time order): order[i, :counts[i]] are row i's masked frames
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    rank = (mask.long().cumsum(dim=1) - 1).clamp(min=0)  # a masked frame's index among them
    choices = (counts - 1).clamp(min=1)[:, None, None]
    draw = torch.rand(batch, frames, num_negatives, generator=generator, device=mask.device)
    picks = (draw * choices).long().clamp(max=choices - 1)
    picks = picks + (picks >= rank[..., None]).long()  # skip the frame itself
    picks = torch.where((counts >= 2)[:, None, None], picks, rank[..., None].expand_as(picks))
    return order.gather(1, picks.reshape(batch, -1)).reshape(batch, frames, num_negatives)


@TASKS.register("wav2vec2", config=Wav2Vec2TaskConfig)
class Wav2Vec2Task(PretextTask):
    """Masked-frame contrastive learning on raw audio with a Gumbel product quantizer."""

    modalities = ("audio",)
    required_columns = ("audio",)

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        cfg: Wav2Vec2TaskConfig = recipe.task
        config = wav2vec2_config(recipe.model, recipe.data.audio)
        config.mask_time_prob = cfg.mask_prob
        config.mask_time_length = cfg.mask_length
        config.mask_time_min_masks = cfg.min_masks
        config.num_negatives = cfg.num_negatives
        config.contrastive_logits_temperature = cfg.contrastive_temperature
        config.diversity_loss_weight = cfg.diversity_loss_weight
        self.cfg = cfg
        self.adapter = AudioAdapter(recipe.data.audio)
        self.model = Wav2Vec2ForPreTraining(config)
        # a buffer, so checkpoints carry it and a resumed run continues the schedule
        self.register_buffer("gumbel_temperature", torch.tensor(cfg.max_gumbel_temperature))

    def example_lengths(self, dataset: Any) -> list[int]:
        return self.adapter.example_lengths(dataset)

    def preprocess(self, example: dict[str, Any], train: bool = True) -> dict[str, Any]:
        return self.adapter.preprocess(example, train)

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.adapter.collate(examples)

    def forward(self, batch: dict[str, torch.Tensor]) -> TaskOutput:
        values, attention = batch["input_values"], batch["attention_mask"]
        lengths = frame_lengths(self.model, attention)
        cfg = self.cfg
        mask = compute_span_mask(
            lengths, cfg.mask_prob, cfg.mask_length, num_frames(self.model, values.shape[1]), cfg.min_masks
        )
        offsets = torch.arange(mask.shape[0], device=mask.device)[:, None, None] * mask.shape[1]
        negatives = sample_negatives(mask, cfg.num_negatives) + offsets
        self.model.set_gumbel_temperature(float(self.gumbel_temperature))
        out = self.model(
            values, attention_mask=attention, mask_time_indices=mask, sampled_negative_indices=negatives
        )
        masked = mask.sum().clamp(min=1)
        metrics = {
            "contrastive_loss": out.contrastive_loss.detach() / masked,
            "diversity_loss": out.diversity_loss.detach() / masked,
            "codevector_perplexity": out.codevector_perplexity.detach(),
            "gumbel_temperature": self.gumbel_temperature.clone(),  # the value this step used
            "masked_fraction": mask.sum() / lengths.sum().clamp(min=1),
        }
        return TaskOutput(out.loss / masked, metrics)

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Anneal the Gumbel temperature: ``max(max_t * decay**step, min_t)`` (as in the paper)."""
        cfg = self.cfg
        value = max(cfg.max_gumbel_temperature * cfg.gumbel_temperature_decay**step, cfg.min_gumbel_temperature)
        self.gumbel_temperature.fill_(value)

    @property
    def backbone(self) -> nn.Module:
        return self.model.wav2vec2

    def embed(self, batch: dict[str, torch.Tensor], pooling: str = "mean") -> torch.Tensor:
        """Mean of the context network's output over each example's real frames."""
        if pooling != "mean":
            raise ValueError(f"eval.pooling={pooling!r}: wav2vec2 has no CLS token; use 'mean'")
        values, attention = batch["input_values"], batch["attention_mask"]
        valid = valid_frames(self.model, attention)
        # an explicit empty mask: without one the model would draw its own SpecAugment mask
        hidden = self.model.wav2vec2(
            values, attention_mask=attention, mask_time_indices=torch.zeros_like(valid)
        ).last_hidden_state
        return masked_mean(hidden, valid)

    def export_model(self) -> Wav2Vec2ForPreTraining:
        return self.model

    def processor(self) -> Wav2Vec2FeatureExtractor:
        return wav2vec2_processor(self.recipe.data.audio)
