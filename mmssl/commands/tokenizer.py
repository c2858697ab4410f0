"""``mmssl tokenizer train --data FILE --vocab-size N --out DIR``: a sentencepiece tokenizer for MLM.

``--data`` is a parquet, CSV, JSON(L) or text file (or a glob of them) read with ``datasets``,
with ``--column`` naming the text column, or a recipe YAML whose ``data:`` section is used.
The output directory loads with ``AutoTokenizer.from_pretrained`` and goes into a recipe
as ``data.text.tokenizer``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmssl.recipe import DataConfig

HELP = "train a sentencepiece tokenizer on a text column (saved as a transformers fast tokenizer)"

_BUILDERS = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json", ".txt": "text"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = sub.add_parser("train", help="train and save a tokenizer", description=HELP)
    train.add_argument("--data", required=True,
                       help="a .parquet/.csv/.json/.jsonl/.txt file or glob, or a recipe .yaml")
    train.add_argument("--column", default="text", help="the text column (default: text)")
    train.add_argument("--split", default="train", help="the split to read (default: train)")
    train.add_argument("--vocab-size", type=int, default=8000, help="at most this many tokens")
    train.add_argument("--model", choices=("unigram", "bpe"), default="unigram",
                       help="sentencepiece model type (default: unigram)")
    train.add_argument("--lowercase", action="store_true", help="fold case when encoding")
    train.add_argument("--max-sentences", type=int, default=1_000_000,
                       help="read at most this many texts (default: 1,000,000)")
    train.add_argument("--max-length", type=int, default=512,
                       help="the tokenizer's model_max_length (default: 512)")
    train.add_argument("--out", required=True, help="directory to write the tokenizer to")


def data_config(spec: str, column: str, split: str) -> DataConfig:
    """The ``data:`` section a ``--data`` argument stands for."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml"):
        from mmssl.recipe import load_recipe

        return load_recipe(path).data
    builder = _BUILDERS.get(path.suffix.lower())
    if builder is None:
        known = ", ".join(sorted(_BUILDERS))
        raise ValueError(f"--data: cannot tell the format of {spec!r} (known endings: {known}, .yaml)")
    columns = {"text": column} if column != "text" else {}
    return DataConfig(source=builder, data_files={split: spec}, split=split, columns=columns)


def run(args: argparse.Namespace) -> int:
    from mmssl.data.sources import load_data
    from mmssl.modalities.tokenizer import iter_texts, train_tokenizer

    data = load_data(data_config(args.data, args.column, args.split), required=("text",))
    tokenizer = train_tokenizer(
        iter_texts(data, args.max_sentences), args.out, vocab_size=args.vocab_size, model_type=args.model,
        lowercase=args.lowercase, max_sentences=args.max_sentences,
        model_max_length=args.max_length,
    )
    print(f"Saved a {args.model} tokenizer with {len(tokenizer)} tokens to {args.out}")
    print(f"Use it in a recipe with: data.text.tokenizer={args.out}")
    return 0
