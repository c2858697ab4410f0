"""ModernBERT (``ModernBertModel``): rotary positions, alternating local/global attention,
unpadded attention where flash-attention is installed (Warner et al., 2024); for MLM,
the view tasks and data2vec, on the recipe's tokenizer."""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import (
    ModernBertConfig,
    ModernBertForMaskedLM,
    ModernBertModel,
    PreTrainedTokenizerBase,
)

from mmssl.backbones.base import VIEW_TASKS, Backbone, register
from mmssl.backbones.bert import pooled_tokens, tokenizer_of
from mmssl.modalities.configs import make_config, preset_fields
from mmssl.recipe import DataConfig, ModelConfig

#: ``nano`` for tests and CPU recipes; ``base`` is ModernBERT-base.
MODERNBERT_PRESETS: dict[str, dict[str, Any]] = {
    "nano": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                 local_attention=64),
    "tiny": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=2, intermediate_size=256,
                 local_attention=128),
    "base": dict(hidden_size=768, num_hidden_layers=22, num_attention_heads=12, intermediate_size=1152,
                 local_attention=128),
}


def modernbert_config(model: ModelConfig, data: DataConfig, tokenizer: PreTrainedTokenizerBase) -> ModernBertConfig:
    """Sized for the tokenizer: its vocabulary and special tokens (CLS/SEP, or BOS/EOS)."""
    cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    base = {**preset_fields(MODERNBERT_PRESETS, model.preset, "ModernBERT"),
            "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
            "cls_token_id": cls_id, "bos_token_id": cls_id, "sep_token_id": sep_id, "eos_token_id": sep_id,
            "max_position_embeddings": max(512, data.text.max_length)}
    return make_config(ModernBertConfig, base, model.config)


MODERNBERT = register(Backbone(
    name="modernbert", modality="text", model_type="modernbert", tasks=("mlm", *VIEW_TASKS, "data2vec"),
    build=lambda model, data, tokenizer: ModernBertModel(modernbert_config(model, data, tokenizer)),
    pooled=pooled_tokens, processor=tokenizer_of,
    masked_lm=lambda model, data, tokenizer: ModernBertForMaskedLM(modernbert_config(model, data, tokenizer)),
    lm_head=lambda mlm: nn.Sequential(mlm.head, mlm.decoder),
), __name__)
