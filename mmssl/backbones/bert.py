"""BERT and RoBERTa (``BertModel``, ``RobertaModel``): today's text encoders on a trained
tokenizer. BERT serves MLM, the view tasks, data2vec and CLIP towers; RoBERTa MLM."""

from __future__ import annotations

from typing import Any

import torch
from transformers import BertForMaskedLM, BertModel, RobertaForMaskedLM, RobertaModel

from mmssl.backbones.base import VIEW_TASKS, Backbone, register
from mmssl.modalities.pooling import masked_mean
from mmssl.modalities.text import bert_config, roberta_config
from mmssl.recipe import DataConfig, ModelConfig


def pooled_tokens(model: Any, batch: dict[str, torch.Tensor], pooling: str) -> torch.Tensor:
    """The first token's state (``cls``) or the mean over real (unpadded) tokens."""
    mask = batch["attention_mask"]
    hidden = model(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state
    return hidden[:, 0] if pooling == "cls" else masked_mean(hidden, mask.bool())


def tokenizer_of(data: DataConfig, tokenizer: Any) -> Any:
    return tokenizer


def build(model: ModelConfig, data: DataConfig, tokenizer: Any) -> BertModel:
    return BertModel(bert_config(model, data.text, tokenizer), add_pooling_layer=False)


BERT = register(Backbone(
    name="bert", modality="text", model_type="bert", tasks=("mlm", *VIEW_TASKS, "data2vec", "data2vec2", "clip"),
    build=build, pooled=pooled_tokens, processor=tokenizer_of,
    masked_lm=lambda model, data, tokenizer: BertForMaskedLM(bert_config(model, data.text, tokenizer)),
    lm_head=lambda mlm: mlm.cls,
), __name__)

ROBERTA = register(Backbone(
    name="roberta", modality="text", model_type="roberta", tasks=("mlm",),
    build=lambda model, data, tokenizer: RobertaModel(roberta_config(model, data.text, tokenizer),
                                                      add_pooling_layer=False),
    pooled=pooled_tokens, processor=tokenizer_of,
    masked_lm=lambda model, data, tokenizer: RobertaForMaskedLM(roberta_config(model, data.text, tokenizer)),
    lm_head=lambda mlm: mlm.lm_head,
), __name__)

