"""The text modality: tokenizers, BERT/RoBERTa backbone configs, padding, packing and BERT
masking; :class:`TextModality` is the ``text`` entry of ``MODALITIES``.

Public API (used by MLM, data2vec text, the view tasks and the CLIP text tower):

- :func:`load_tokenizer` reads ``data.text.tokenizer`` (a directory written by
  ``mmssl tokenizer train`` or any ``AutoTokenizer`` folder); :func:`ensure_tokenizer`
  trains one into the run directory first when the recipe names none.
- :func:`bert_config` / :func:`roberta_config` (for ``mmssl.backbones.bert``) build
  transformers configs from a preset (nano/tiny/small/base) plus ``model.config`` overrides.
- :class:`TextAdapter` tokenizes one text (``preprocess``) and pads a batch with an
  attention mask (``collate``).
- :func:`pack_dataset` / :func:`tokenize_dataset` tokenize a ``datasets`` column once
  (batched, cached, multiprocess) into fixed-length blocks or single truncated texts.
- :class:`TokenMasker` is BERT's masking (chosen positions, 80/10/10, labels -100 elsewhere,
  optional whole-word masking) driven by an explicit ``torch.Generator``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from torch import nn
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertModel,
    PreTrainedTokenizerBase,
    RobertaConfig,
)
from transformers.masking_utils import create_bidirectional_mask

from mmssl.augment.text import TextViews
from mmssl.data.examples import BadExampleError
from mmssl.data.sources import load_data
from mmssl.modalities.base import Modality, Tokens, ViewRequest, register
from mmssl.modalities.configs import TowerConfig, make_config, preset_fields
from mmssl.modalities.pooling import masked_mean
from mmssl.modalities.tokenizer import iter_texts, train_tokenizer
from mmssl.recipe import ModelConfig, Recipe, TextConfig

IGNORE_INDEX = -100

#: BERT sizes; ``nano`` is for tests and CPU recipes, tiny/small/base follow Turc et al. (2019).
BERT_PRESETS: dict[str, dict[str, int]] = {
    "nano": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256),
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512),
    "small": dict(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=2048),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}


# --------------------------------------------------------------------------- tokenizer


#: a folder holding one of these is a tokenizer AutoTokenizer can load
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def load_tokenizer(text: TextConfig) -> PreTrainedTokenizerBase:
    """The tokenizer ``data.text.tokenizer`` names; it must have [PAD] and [MASK]-like tokens."""
    if not text.tokenizer:
        raise ValueError(
            "data.text.tokenizer: name a tokenizer directory (train one with `mmssl tokenizer train`)"
        )
    folder = Path(text.tokenizer)
    if not folder.is_dir():
        raise FileNotFoundError(f"data.text.tokenizer: no such directory {text.tokenizer!r}")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        # transformers would otherwise guess at a slow tokenizer and ask to install sentencepiece
        raise FileNotFoundError(
            f"data.text.tokenizer: {text.tokenizer!r} holds no tokenizer ({' or '.join(TOKENIZER_FILES)}); "
            "train one with `mmssl tokenizer train`, or leave data.text.tokenizer empty to train one "
            "into the run directory"
        )
    tokenizer = AutoTokenizer.from_pretrained(text.tokenizer)
    if tokenizer.pad_token_id is None:
        raise ValueError(f"data.text.tokenizer: {text.tokenizer!r} has no padding token")
    return tokenizer


def ensure_tokenizer(
    recipe: Recipe, texts: Callable[[], Iterable[str | None]] | None = None
) -> PreTrainedTokenizerBase:
    """The recipe's tokenizer; if none is named, train one into the run dir and name it in
    the recipe (so the saved recipe reloads it).

    It learns from ``texts()`` (called only when training; CLIP passes its captions or
    prompts), by default the data's ``text`` column.
    """
    text = recipe.data.text
    if not text.tokenizer:
        # absolute, so that the run (recipe.yaml) loads from any working directory
        out = recipe.run_dir.absolute() / "tokenizer"
        # under several processes the main one trains it and the others wait, then load it
        with PartialState().main_process_first():
            if not (out / "tokenizer.json").is_file():
                if texts is None:
                    sample = iter_texts(load_data(recipe.data, required=("text",)), text.tokenizer_sample)
                else:
                    sample = islice(texts(), text.tokenizer_sample)
                train_tokenizer(sample, out, vocab_size=text.vocab_size, model_type=text.tokenizer_model,
                                lowercase=text.lowercase, max_sentences=text.tokenizer_sample,
                                model_max_length=text.max_length)
        text.tokenizer = str(out)
    return load_tokenizer(text)


# --------------------------------------------------------------------------- backbones


def _text_config(cls: type, model: ModelConfig, tokenizer: PreTrainedTokenizerBase,
                 max_positions: int) -> Any:
    base = {
        **preset_fields(BERT_PRESETS, model.preset, "text"),
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "max_position_embeddings": max_positions,
    }
    return make_config(cls, base, model.config)


def bert_config(model: ModelConfig, text: TextConfig, tokenizer: PreTrainedTokenizerBase) -> BertConfig:
    """BERT encoder (``BertModel`` / ``BertForMaskedLM``) sized for the tokenizer."""
    return _text_config(BertConfig, model, tokenizer, max(512, text.max_length))


def roberta_config(model: ModelConfig, text: TextConfig, tokenizer: PreTrainedTokenizerBase) -> RobertaConfig:
    """RoBERTa encoder (positions start after the padding index, hence the +2)."""
    config = _text_config(RobertaConfig, model, tokenizer, max(512, text.max_length) + 2)
    config.type_vocab_size = 1
    return config


# --------------------------------------------------------------------------- batching


def pad_batch(sequences: list[torch.Tensor], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad 1-D id tensors to the longest; ``attention_mask`` is 1 on real tokens."""
    lengths = torch.tensor([len(s) for s in sequences])
    input_ids = torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=pad_id)
    attention_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
    return {"input_ids": input_ids, "attention_mask": attention_mask}


class TextAdapter:
    """Tokenize single texts for evaluation and pad batches, for one recipe's text settings."""

    def __init__(self, text: TextConfig, tokenizer: PreTrainedTokenizerBase) -> None:
        self.text = text
        self.tokenizer = tokenizer

    def encode(self, text: Any) -> list[int]:
        """Ids of one text with the tokenizer's special tokens, truncated to ``max_length``."""
        if not isinstance(text, str):
            raise ValueError(f"expected a text string, got {type(text).__name__}")
        if self.text.lowercase:
            text = text.lower()
        return self.tokenizer(text, truncation=True, max_length=self.text.max_length)["input_ids"]

    def preprocess(self, example: dict[str, Any], train: bool = True) -> dict[str, Any]:
        """``input_ids`` of ``example["text"]`` (or the already tokenized ``input_ids``)."""
        ids = example["input_ids"] if "input_ids" in example else self.encode(example["text"])
        out: dict[str, Any] = {"input_ids": torch.as_tensor(ids, dtype=torch.long)}
        if "label" in example:
            out["label"] = example["label"]
        return out

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = pad_batch([ex["input_ids"] for ex in examples], self.tokenizer.pad_token_id)
        if examples and "label" in examples[0]:
            batch["labels"] = torch.tensor([ex["label"] for ex in examples])
        return batch


# --------------------------------------------------------------------------- dataset-level


def _num_proc(dataset: Any, text: TextConfig) -> int | None:
    """``data.text.num_proc``, or all cores (up to 8) for datasets large enough to pay off."""
    if not hasattr(dataset, "num_rows"):  # streaming: map is lazy and single-process
        return None
    if text.num_proc is not None:
        return text.num_proc if text.num_proc > 1 else None
    cores = min(os.cpu_count() or 1, 8)
    return cores if cores > 1 and dataset.num_rows >= 50_000 else None


def _texts(batch: dict[str, list], text: TextConfig) -> list[str]:
    texts = [t if isinstance(t, str) else "" for t in batch["text"]]
    return [t.lower() for t in texts] if text.lowercase else texts


def drop_bad_texts(dataset: Any, policy: str) -> tuple[Any, int]:
    """Apply the bad-example policy to texts that are empty or not strings, before tokenizing.

    ``raise`` names the first bad example's index; ``skip`` drops them and returns how many
    (counted for in-memory datasets; a stream drops them as it goes).
    """

    def bad(value: Any) -> bool:
        return not isinstance(value, str) or not value.strip()

    def describe(index: int, value: Any) -> str:
        what = "an empty text" if isinstance(value, str) else f"not a string ({type(value).__name__})"
        return (f"example {index}: {what} in the text column "
                "(set data.on_bad_example=skip to skip such examples)")

    if not hasattr(dataset, "num_rows"):
        def keep(example: dict, index: int) -> bool:
            if bad(example["text"]) and policy == "raise":
                raise BadExampleError(describe(index, example["text"]))
            return not bad(example["text"])

        return dataset.filter(keep, with_indices=True), 0
    texts = dataset["text"]
    found = [i for i, value in enumerate(texts) if bad(value)]
    if found and policy == "raise":
        raise BadExampleError(describe(found[0], texts[found[0]]))
    if not found:
        return dataset, 0
    drop = set(found)
    return dataset.select([i for i in range(len(texts)) if i not in drop]), len(found)


def tokenize_dataset(dataset: Any, tokenizer: PreTrainedTokenizerBase, text: TextConfig) -> Any:
    """One example per text: ``[CLS] ids [SEP]`` truncated to ``max_length``; empty texts dropped."""

    def encode(batch: dict[str, list]) -> dict[str, list]:
        ids = tokenizer(_texts(batch, text), truncation=True, max_length=text.max_length)["input_ids"]
        return {"input_ids": [x for x in ids if len(x) > tokenizer.num_special_tokens_to_add()]}

    kwargs = {"num_proc": _num_proc(dataset, text), "desc": "tokenizing"} if hasattr(dataset, "num_rows") else {}
    return dataset.select_columns(["text"]).map(encode, batched=True, remove_columns=["text"], **kwargs)


def pack_dataset(
    dataset: Any, tokenizer: PreTrainedTokenizerBase, text: TextConfig, batch_size: int = 1000
) -> Any:
    """Concatenate tokenized texts into blocks of exactly ``max_length`` tokens, no padding.

    Each text's ids (without specials) are followed by ``[SEP]`` (the document boundary)
    and the stream is cut into ``max_length - 1`` tokens, each block led by ``[CLS]``. Every
    token of the corpus lands in exactly one block; per ``batch_size`` texts only the last
    block may be shorter (it is kept, not dropped, and padded in its batch).
    """
    if text.max_length < 2:
        raise ValueError(f"data.text.max_length must be at least 2 to pack, got {text.max_length}")
    cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if cls_id is None or sep_id is None:
        raise ValueError("data.text.packing needs a tokenizer with [CLS]/[SEP] (or BOS/EOS) tokens")
    span = text.max_length - 1

    def pack(batch: dict[str, list]) -> dict[str, list]:
        docs = tokenizer(_texts(batch, text), add_special_tokens=False, verbose=False)["input_ids"]
        stream = [tok for doc in docs if doc for tok in (*doc, sep_id)]
        return {"input_ids": [[cls_id, *stream[i:i + span]] for i in range(0, len(stream), span)]}

    kwargs = {"num_proc": _num_proc(dataset, text), "desc": "tokenizing and packing"} if hasattr(
        dataset, "num_rows") else {}
    # selecting the column first works for streams that do not list their columns too
    return dataset.select_columns(["text"]).map(pack, batched=True, batch_size=batch_size,
                                                remove_columns=["text"], **kwargs)


# --------------------------------------------------------------------------- masking


#: word-boundary prefixes of common vocabularies, and whether a token carrying one starts a word
WORD_MARKERS = {"##": False, "▁": True, "Ġ": True}


def word_start_table(tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """``[vocab]`` bool: does this token begin a word? Special tokens always do.

    Recognises WordPiece (``##`` continues a word), sentencepiece metaspace (``▁`` starts
    one) and byte-level BPE (``Ġ`` starts one); other vocabularies cannot do whole-word masking.
    The convention is the marker most tokens carry, not the first one seen: byte-level BPE
    vocabularies hold markdown's ``##``/``###`` and sentencepiece ones can learn ``##``.
    """
    tokens = [t or "" for t in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))]
    counts = {marker: sum(t.startswith(marker) for t in tokens) for marker in WORD_MARKERS}
    marker = max(counts, key=counts.__getitem__)
    if counts[marker] == 0:
        raise ValueError(
            "whole-word masking: the tokenizer marks no word boundaries (##, ▁ or Ġ); "
            "set whole_word_mask: false"
        )
    table = torch.tensor([t.startswith(marker) == WORD_MARKERS[marker] for t in tokens], dtype=torch.bool)
    table[tokenizer.all_special_ids] = True
    return table


class TokenMasker:
    """BERT's masked-token corruption for batches of token ids.

    Each non-special token is chosen with probability ``mask_prob`` (with ``whole_word``,
    each word is, and all its pieces follow it); of the chosen, ``replace_prob`` become the
    mask token, ``random_prob`` a random non-special token, the rest stay unchanged.
    Labels hold the original id at chosen positions and ``-100`` everywhere else. All
    randomness comes from the ``generator`` argument, so masks are reproducible and new
    whenever the caller's seed changes.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        mask_prob: float = 0.15,
        replace_prob: float = 0.8,
        random_prob: float = 0.1,
        whole_word: bool = False,
    ) -> None:
        if not 0.0 < mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
        if replace_prob < 0 or random_prob < 0 or replace_prob + random_prob > 1.0:
            raise ValueError(f"replace_prob + random_prob must be within [0, 1], got {replace_prob} + {random_prob}")
        if tokenizer.mask_token_id is None:
            raise ValueError("masking needs a tokenizer with a mask token ([MASK])")
        self.mask_prob, self.replace_prob, self.random_prob = mask_prob, replace_prob, random_prob
        self.mask_token_id = tokenizer.mask_token_id
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        vocab = torch.arange(len(tokenizer))
        self.random_ids = vocab[~torch.isin(vocab, self.special_ids)]
        self.word_starts = word_start_table(tokenizer) if whole_word else None

    def chosen_positions(self, input_ids: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[batch, length]`` bool: the positions to predict (never special or padding tokens)."""
        special = torch.isin(input_ids, self.special_ids)
        draw = torch.rand(input_ids.shape, generator=generator)
        if self.word_starts is not None:
            starts = self.word_starts[input_ids] | special
            positions = torch.arange(input_ids.shape[1]).expand_as(input_ids)
            word_start = torch.where(starts, positions, torch.zeros_like(positions)).cummax(dim=1).values
            draw = draw.gather(1, word_start)
        return (draw < self.mask_prob) & ~special

    def __call__(
        self, input_ids: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(corrupted_ids, labels)`` for ``[batch, length]`` ids; the input is not modified."""
        chosen = self.chosen_positions(input_ids, generator)
        labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
        action = torch.rand(input_ids.shape, generator=generator)
        to_mask = chosen & (action < self.replace_prob)
        to_random = chosen & (action >= self.replace_prob) & (action < self.replace_prob + self.random_prob)
        pick = torch.randint(len(self.random_ids), input_ids.shape, generator=generator)
        corrupted = torch.where(to_mask, torch.full_like(input_ids, self.mask_token_id), input_ids)
        corrupted = torch.where(to_random, self.random_ids[pick], corrupted)
        return corrupted, labels


def mask_per_example(
    masker: TokenMasker, input_ids: torch.Tensor, attention_mask: torch.Tensor, seeds: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``masker`` applied to each row's real tokens with a generator of that example's seed
    (from ``preprocess``), so an example's mask depends only on the example and the epoch:
    not on which examples share its batch, the padding, workers, resume or process count."""
    corrupted, labels = input_ids.clone(), torch.full_like(input_ids, IGNORE_INDEX)
    for row, seed in enumerate(seeds):
        length = int(attention_mask[row].sum())
        ids, row_labels = masker(input_ids[row : row + 1, :length], torch.Generator().manual_seed(int(seed)))
        corrupted[row, :length], labels[row, :length] = ids[0], row_labels[0]
    return corrupted, labels


# --------------------------------------------------------------------------- modality


@register
class TextModality(Modality):
    """Texts from the ``text`` column on the recipe's tokenizer (trained into the run dir,
    from ``corpus`` or the text column, when none is named): tokenized once in ``prepare``
    (packed or one text per example), span deletion and token dropout as training views
    (no local views), padded id batches, BERT or ModernBERT encoders. Masked prediction:
    data2vec 1.0 BERT-masks the tokens in the collator, from a seed each training example
    draws in ``masked_preprocess``; padding is never a target."""

    name = "text"
    column = "text"
    default_backbone = "bert"
    tower_pooling = "pooler"
    tower_poolings = ("pooler", "cls", "mean")
    local_views = False

    def __init__(self, recipe: Recipe, backbone: str | None = None, views: ViewRequest | None = None,
                 corpus: Callable[[], Iterable[str | None]] | None = None) -> None:
        super().__init__(recipe, backbone, views)
        self.tokenizer = ensure_tokenizer(recipe, corpus)
        self.adapter = TextAdapter(recipe.data.text, self.tokenizer)
        self.pad_values = {"input_ids": self.tokenizer.pad_token_id, "attention_mask": 0}
        #: BERT maskers by ``mask_prob``, built on first use by :meth:`masked_collate`
        self.maskers: dict[float, TokenMasker] = {}
        if views is not None:
            # [UNK] stands for ordinary text, so views may drop it like any other token
            kept = [i for i in self.tokenizer.all_special_ids if i != self.tokenizer.unk_token_id]
            self.text_views = TextViews(recipe.task.text_views, kept)

    def prepare(self, dataset: Any) -> tuple[Any, int]:
        dataset, bad = drop_bad_texts(dataset, self.recipe.data.on_bad_example)
        text = self.recipe.data.text
        prepared = pack_dataset if text.packing else tokenize_dataset
        return prepared(dataset, self.tokenizer, text), bad

    def example_lengths(self, dataset: Any) -> list[int]:
        return [len(ids) for ids in dataset["input_ids"]]

    def preprocess(self, example: dict[str, Any], train: bool = True) -> dict[str, Any]:
        return self.adapter.preprocess(example, train)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.adapter.collate(items)

    def augment(self, example: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
        ids = self.adapter.preprocess(example)["input_ids"]
        return [{"input_ids": self.text_views(ids)} for _ in range(self.view_request.count)]

    def build_encoder(self, model: ModelConfig | None = None) -> nn.Module:
        return self.backbone.build(model or self.recipe.model, self.recipe.data, self.tokenizer)

    def processor(self) -> PreTrainedTokenizerBase:
        return self.backbone.processor(self.recipe.data, self.tokenizer)

    def tower_encoder(self, cfg: TowerConfig, pooling: str) -> nn.Module:
        config = bert_config(ModelConfig(cfg.preset, dict(cfg.config)), self.recipe.data.text, self.tokenizer)
        return BertModel(config, add_pooling_layer=pooling == "pooler")

    def adopt_tower_encoder(self, model: nn.Module, pooling: str) -> nn.Module:
        model = getattr(model, "bert", model)
        if pooling == "pooler" and getattr(model, "pooler", None) is None:
            raise ValueError("task.towers.text.pooling: this text model has no pooler; use 'cls' or 'mean'")
        return model

    def token_encoder(self, mask_token: bool) -> nn.Module:
        """The backbone's encoder; masked tokens become the tokenizer's [MASK] (checked here,
        before training) when ``mask_token``."""
        if mask_token and self.tokenizer.mask_token_id is None:
            raise ValueError("masking needs a tokenizer with a mask token ([MASK])")
        return self.build_encoder()

    def masked_preprocess(self, example: dict[str, Any]) -> dict[str, Any]:
        """The example's ids and a mask seed, drawn under the loop's per-example seed."""
        return {**self.preprocess(example, train=True), "mask_seed": int(torch.randint(0, 2**62, ()))}

    def masked_collate(self, items: list[dict[str, Any]], cfg: Any) -> dict[str, torch.Tensor]:
        """Padded ids plus ``masked_input_ids`` (BERT masking at ``cfg.mask_prob``, each row
        from its seed) and ``target_mask``, when the items carry seeds."""
        batch = self.collate(items)
        if "mask_seed" in items[0]:
            if cfg.mask_prob not in self.maskers:
                self.maskers[cfg.mask_prob] = TokenMasker(self.tokenizer, cfg.mask_prob)
            masker = self.maskers[cfg.mask_prob]
            batch["masked_input_ids"], labels = mask_per_example(
                masker, batch["input_ids"], batch["attention_mask"], [item["mask_seed"] for item in items])
            batch["target_mask"] = labels != IGNORE_INDEX
        return batch

    def token_mask(self, encoder: nn.Module, batch: dict[str, torch.Tensor], cfg: Any) -> torch.Tensor:
        return batch["target_mask"]

    def masked_token_states(self, encoder: nn.Module, batch: dict[str, torch.Tensor],
                            mask: torch.Tensor) -> torch.Tensor:
        return encoder(input_ids=batch["masked_input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state

    def token_states(self, encoder: nn.Module, batch: dict[str, torch.Tensor]
                     ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        out = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
        return out.hidden_states[1:], batch["attention_mask"].bool()

    def token_features(self, encoder: nn.Module, batch: dict[str, torch.Tensor], pooling: str) -> torch.Tensor:
        hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return hidden[:, 0] if pooling == "cls" else masked_mean(hidden, batch["attention_mask"].bool())

    def token_embeddings(self, encoder: nn.Module, batch: dict[str, torch.Tensor]) -> Tokens:
        """Token + position embeddings of the whole text; padding is not real."""
        return encoder.embeddings(input_ids=batch["input_ids"]), batch["attention_mask"].bool(), None

    def encode_tokens(self, encoder: nn.Module, x: torch.Tensor, attend: torch.Tensor,
                      prefix: torch.Tensor | None) -> torch.Tensor:
        """The kept tokens through the encoder; padding and empty slots left out by the mask."""
        mask = create_bidirectional_mask(config=encoder.config, inputs_embeds=x, attention_mask=attend.long())
        return encoder.encoder(x, attention_mask=mask).last_hidden_state
