"""Train a sentencepiece tokenizer on a text column and save it as a transformers fast tokenizer.

sentencepiece learns the vocabulary (unigram or BPE) straight from an iterator over the
texts, so a large ``datasets`` column is streamed, never copied to a temporary file. The
model is then converted to a ``tokenizers`` pipeline (sentencepiece's own normalizer,
metaspace pre-tokenizer and decoder, BERT's ``[CLS] x [SEP]`` post-processing) and saved
with ``save_pretrained``, so ``AutoTokenizer.from_pretrained(out_dir)`` loads it anywhere.
Special tokens have fixed ids: ``[PAD]`` 0, ``[UNK]`` 1, ``[CLS]`` 2, ``[SEP]`` 3, ``[MASK]`` 4.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import sentencepiece as spm
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import SentencePieceExtractor

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
#: the special tokens in id order; CLS/SEP/MASK are sentencepiece control symbols, so a
#: literal "[MASK]" in the training text is never learned as a piece.
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
SPM_MODEL_FILE = "spm.model"
#: printable ASCII is kept in vocabularies of at least 256 tokens: ``character_coverage``
#: drops the rarest characters, and in English news that made "Z", "X", "?" and "!" unknown
ASCII_CHARS = "".join(chr(c) for c in range(33, 127))


def iter_texts(dataset: Any, limit: int | None = None) -> Iterator[str | None]:
    """The ``text`` column of a ``datasets`` split, row by row (nothing else is read)."""
    return islice((row["text"] for row in dataset.select_columns(["text"])), limit)


def _clean(texts: Iterable[str | None]) -> Iterator[str]:
    for text in texts:
        if text and text.strip():
            yield text


def _fast_tokenizer(model_file: Path, model_max_length: int) -> PreTrainedTokenizerFast:
    spec = SentencePieceExtractor(str(model_file)).extract(None)
    if "merges" in spec:
        model = models.BPE(spec["vocab"], spec["merges"], unk_token=UNK, fuse_unk=True)
    else:
        model = models.Unigram(spec["vocab"], unk_id=spec["unk_id"], byte_fallback=False)
    tokenizer = Tokenizer(model)
    charsmap = spec["_spm_precompiled_charsmap"]
    steps = [normalizers.Precompiled(charsmap)] if charsmap else []
    # sentencepiece drops leading/trailing whitespace and collapses runs of spaces; without
    # the Strip a text ending in a space would gain a lone "▁" token
    tokenizer.normalizer = normalizers.Sequence(
        [*steps, normalizers.Strip(), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    cls_id, sep_id = tokenizer.token_to_id(CLS), tokenizer.token_to_id(SEP)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=[(CLS, cls_id), (SEP, sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        unk_token=UNK,
        cls_token=CLS,
        sep_token=SEP,
        mask_token=MASK,
        model_max_length=model_max_length,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def train_tokenizer(
    texts: Iterable[str | None],
    out_dir: str | Path,
    vocab_size: int = 8000,
    model_type: Literal["unigram", "bpe"] = "unigram",
    lowercase: bool = False,
    max_sentences: int = 1_000_000,
    character_coverage: float = 0.9995,
    model_max_length: int = 512,
) -> PreTrainedTokenizerFast:
    """Learn a vocabulary from ``texts`` and save the fast tokenizer (and ``spm.model``) in ``out_dir``.

    ``vocab_size`` is an upper bound (a small corpus gives fewer pieces rather than an
    error); ``max_sentences`` caps how many texts sentencepiece samples; ``lowercase`` folds
    case in the normalizer, so it applies at encoding time too. Characters outside
    ``character_coverage`` become ``[UNK]``, except printable ASCII when ``vocab_size`` is
    at least 256 (smaller vocabularies have no room for all of it).
    """
    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"model_type must be 'unigram' or 'bpe', got {model_type!r}")
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {vocab_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_file = out / SPM_MODEL_FILE
    sentences = _clean(texts)
    first = next(sentences, None)
    if first is None:
        raise ValueError("no text to train a tokenizer on (the column is empty or blank)")

    def all_sentences() -> Iterator[str]:
        yield first
        yield from sentences

    required = "".join(sorted(set(ASCII_CHARS.lower() if lowercase else ASCII_CHARS)))
    with model_file.open("wb") as writer:
        spm.SentencePieceTrainer.train(
            sentence_iterator=all_sentences(),
            model_writer=writer,
            model_type=model_type,
            vocab_size=vocab_size,
            hard_vocab_limit=False,
            character_coverage=character_coverage,
            required_chars=required if vocab_size >= 256 else "",
            input_sentence_size=max_sentences,
            shuffle_input_sentence=True,
            normalization_rule_name="nmt_nfkc_cf" if lowercase else "nmt_nfkc",
            pad_id=0,
            unk_id=1,
            bos_id=-1,
            eos_id=-1,
            pad_piece=PAD,
            unk_piece=UNK,
            control_symbols=[CLS, SEP, MASK],
            minloglevel=2,
        )
    tokenizer = _fast_tokenizer(model_file, model_max_length)
    tokenizer.save_pretrained(str(out))
    return tokenizer
