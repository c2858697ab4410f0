"""Train a sentencepiece tokenizer on a text column and save it as a transformers fast tokenizer.

sentencepiece learns the vocabulary (unigram or BPE) straight from an iterator over the
texts, so a large ``datasets`` column is streamed, never copied to a temporary file. The
model is then converted to a ``tokenizers`` pipeline (sentencepiece's own normalizer,
metaspace pre-tokenizer and decoder, BERT's ``[CLS] x [SEP]`` post-processing) and saved
with ``save_pretrained``, so ``AutoTokenizer.from_pretrained(out_dir)`` loads it anywhere.
Special tokens have fixed ids: ``[PAD]`` 0, ``[UNK]`` 1, ``[CLS]`` 2, ``[SEP]`` 3, ``[MASK]`` 4.
"""

from __future__ import annotations

import os
import shutil
import tempfile
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


def flatten_texts(cells: Iterable[Any]) -> Iterator[str | None]:
    """Texts of a column whose cells are texts or lists of texts (several captions per image)."""
    for cell in cells:
        yield from (cell if isinstance(cell, (list, tuple)) else [cell])


def iter_texts(dataset: Any, limit: int | None = None) -> Iterator[str | None]:
    """The texts of the ``text`` column of a ``datasets`` split (only that column is read);
    a cell holding a list of texts gives each of them. ``limit`` counts texts."""
    rows = (row["text"] for row in dataset.select_columns(["text"]))
    return islice(flatten_texts(rows), limit)


def _clean(texts: Iterable[Any]) -> Iterator[str]:
    for text in texts:
        if isinstance(text, str) and text.strip():
            yield text
        elif text is not None and not isinstance(text, str):
            raise ValueError(f"tokenizer training texts must be strings, got a {type(text).__name__}: {text!r:.80}")


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
    sentences = _clean(texts)
    first = next(sentences, None)
    if first is None:
        raise ValueError("no text to train a tokenizer on (the column is empty or blank)")

    failures: list[Exception] = []

    def all_sentences() -> Iterator[str]:
        # sentencepiece would wrap an error of the iterator in its own RuntimeError: keep it
        # and raise it as it was once training returns
        try:
            yield first
            yield from sentences
        except Exception as err:
            failures.append(err)

    out.parent.mkdir(parents=True, exist_ok=True)
    # written in a temporary folder and moved in when complete: a failure leaves no half-made
    # (or empty) tokenizer folder that a later run would try to load
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    try:
        tokenizer = _train(all_sentences(), tmp, vocab_size, model_type, lowercase, max_sentences,
                           character_coverage, model_max_length)
        if failures:
            raise failures[0]
        out.mkdir(exist_ok=True)
        for item in tmp.iterdir():
            os.replace(item, out / item.name)
        tokenizer.name_or_path = str(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tokenizer


def _train(
    sentences: Iterator[str],
    out: Path,
    vocab_size: int,
    model_type: str,
    lowercase: bool,
    max_sentences: int,
    character_coverage: float,
    model_max_length: int,
) -> PreTrainedTokenizerFast:
    """Run sentencepiece on ``sentences`` and save the fast tokenizer in ``out``."""
    model_file = out / SPM_MODEL_FILE
    required = "".join(sorted(set(ASCII_CHARS.lower() if lowercase else ASCII_CHARS)))
    with model_file.open("wb") as writer:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences,
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
