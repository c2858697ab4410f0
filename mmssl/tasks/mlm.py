"""MLM: BERT-style masked-token prediction on packed (or padded) text.

Texts are tokenized once in ``prepare_dataset`` (cached by ``datasets``) and, with
``data.text.packing`` (the default), concatenated into full ``max_length`` blocks so no
compute goes to padding. Masks are drawn in the collator from a generator seeded by the
batch's examples, so each epoch sees new masks and a resumed run replays them exactly.
The MLM head runs only on the chosen positions (about 15% of tokens), which saves most of
the vocabulary projection.

Without ``data.text.tokenizer`` the task trains a sentencepiece tokenizer on the training
texts into ``<run dir>/tokenizer`` (reused if present) and records it in the recipe.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from mmssl.losses.token_mean import global_token_cross_entropy
from mmssl.modalities.pooling import masked_mean
from mmssl.modalities.text import IGNORE_INDEX, TextModality, TokenMasker, mask_per_example
from mmssl.recipe import Recipe
from mmssl.registry import TASKS
from mmssl.tasks.base import PretextTask, TaskOutput
from mmssl.tasks.configs import MLMConfig


@TASKS.register("mlm", config=MLMConfig)
class MLMTask(PretextTask):
    """Masked language modelling on text (Devlin et al., 2019; RoBERTa-style packing)."""

    modalities = ("text",)
    required_columns = ("text",)

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        cfg: MLMConfig = recipe.task
        # the text modality resolves (or trains) the tokenizer, tokenizes and packs
        self.text = TextModality(recipe, backbone=recipe.model.backbone or cfg.architecture)
        self.tokenizer = self.text.tokenizer
        self.masker = TokenMasker(self.tokenizer, cfg.mask_prob, cfg.replace_prob,
                                  cfg.random_prob, cfg.whole_word_mask)
        self.backbone_spec = self.text.backbone
        self.model = self.backbone_spec.masked_lm(recipe.model, recipe.data, self.tokenizer)

    def prepare_dataset(self, dataset: Any) -> Any:
        dataset, self.prepared_bad_examples = self.text.prepare(dataset)
        return dataset

    def example_lengths(self, dataset: Any) -> list[int] | None:
        return self.text.example_lengths(dataset)

    def preprocess(self, example: dict[str, Any], train: bool = True) -> dict[str, Any]:
        out = self.text.preprocess(example, train)
        if train:  # drawn under the loop's per-(seed, epoch, example) seed
            out["mask_seed"] = int(torch.randint(0, 2**62, ()))
        return out

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.text.collate(examples)
        seeds = [ex["mask_seed"] for ex in examples]
        batch["input_ids"], batch["mlm_labels"] = mask_per_example(
            self.masker, batch["input_ids"], batch["attention_mask"], seeds
        )
        return batch

    def collate_eval(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.text.collate(examples)

    @property
    def backbone(self) -> nn.Module:
        return self.model.base_model

    @property
    def lm_head(self) -> nn.Module:
        return self.backbone_spec.lm_head(self.model)

    def _encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["attention_mask"]
        # no padding (packed blocks): let SDPA run without a mask
        attention_mask = None if bool(mask.all()) else mask
        return self.backbone(input_ids=batch["input_ids"], attention_mask=attention_mask).last_hidden_state

    def forward(self, batch: dict[str, torch.Tensor]) -> TaskOutput:
        hidden = self._encode(batch)
        labels = batch["mlm_labels"]
        chosen = labels != IGNORE_INDEX
        targets = labels[chosen]
        logits = self.lm_head(hidden[chosen])
        # every process joins the token count, also one with nothing chosen (a zero sum)
        loss = global_token_cross_entropy(logits, targets)
        if targets.numel() == 0:
            return TaskOutput(loss + hidden.sum() * 0.0, {"masked_tokens": chosen.sum()})
        accuracy = (logits.argmax(-1) == targets).float().mean()
        return TaskOutput(loss, {"mlm_accuracy": accuracy, "masked_tokens": chosen.sum()})

    def embed(self, batch: dict[str, torch.Tensor], pooling: str = "mean") -> torch.Tensor:
        """``cls``: the first token's state; ``mean``: the average over non-padding tokens."""
        hidden = self._encode(batch)
        if pooling == "cls":
            return hidden[:, 0]
        return masked_mean(hidden, batch["attention_mask"])

    def export_model(self) -> PreTrainedModel:
        return self.model

    def processor(self) -> PreTrainedTokenizerBase:
        return self.tokenizer
