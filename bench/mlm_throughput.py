"""MLM training throughput: mmssl's loop against transformers' Trainer, in one run.

All runs train the same ``BertForMaskedLM`` config with the same sentencepiece tokenizer
(trained once on AG News train), batch size, sequence length, AdamW settings and precision.
Three runs alternate ``--repeats`` times:

- mmssl: ``task: mlm`` with packing (full ``max_length`` blocks, masks in the collator,
  MLM head on the masked positions only);
- Trainer (packed): ``Trainer`` + ``DataCollatorForLanguageModeling`` on the very same
  packed blocks (what ``run_mlm.py`` does with ``group_texts``);
- Trainer (padded): the same collator on one text per example padded to the batch's
  longest (``run_mlm.py --line_by_line``).

Throughput is real (non-padding) tokens per second, timed after step ``--warmup``.

    python bench/mlm_throughput.py --steps 60 --warmup 10 --batch-size 32 --preset nano
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from pathlib import Path

import datasets
import torch
import transformers
from timing import StepClock, mmssl_samples_per_s
from transformers import (
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)

from mmssl.data.sources import load_data
from mmssl.modalities.tokenizer import iter_texts, train_tokenizer
from mmssl.recipe import recipe_from_dict
from mmssl.tasks.base import build_task
from mmssl.train.loop import pretrain

ROOT = Path(__file__).resolve().parents[1]
AGNEWS = ROOT.parent / "shared" / "data" / "agnews" / "train.parquet"


def recipe_dict(args: argparse.Namespace, out: str, tokenizer: str, packing: bool = True) -> dict:
    return {
        "name": "bench-mlm",
        "output_dir": out,
        "task": {"name": "mlm", "mask_prob": 0.15},
        "model": {"preset": args.preset},
        "data": {"source": "parquet", "data_files": {"train": str(AGNEWS)},
                 "num_workers": args.workers,
                 "text": {"tokenizer": tokenizer, "max_length": args.max_length, "packing": packing}},
        "train": {"batch_size": args.batch_size, "max_steps": args.steps, "lr": 1e-3,
                  "betas": [0.9, 0.999], "weight_decay": 0.01, "warmup_steps": 0,
                  "max_grad_norm": 1.0, "precision": args.precision,
                  "log_every": args.warmup, "save_every": 0, "progress": False},
    }


def mean_tokens(data: datasets.Dataset, pad_id: int) -> float:
    """Average real tokens per prepared example (the padded runs count no padding)."""
    lengths = [sum(1 for t in ids if t != pad_id) for ids in data["input_ids"]]
    return sum(lengths) / len(lengths)


def run_mmssl(args: argparse.Namespace, tokenizer: str, tokens_per_example: float) -> float:
    with tempfile.TemporaryDirectory() as out:
        pretrain(recipe_from_dict(recipe_dict(args, out, tokenizer)))
        return mmssl_samples_per_s(out, args.warmup) * tokens_per_example


def run_trainer(args: argparse.Namespace, task, data: datasets.Dataset, tokens_per_example: float) -> float:
    collator = DataCollatorForLanguageModeling(task.tokenizer, mlm_probability=0.15)
    with tempfile.TemporaryDirectory() as out:
        training = TrainingArguments(
            output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.batch_size,
            learning_rate=1e-3, weight_decay=0.01, warmup_steps=0, lr_scheduler_type="cosine",
            max_grad_norm=1.0, logging_steps=10_000, save_strategy="no", report_to=[],
            dataloader_num_workers=args.workers, dataloader_drop_last=True,
            use_cpu=not torch.cuda.is_available(), bf16=args.precision == "bf16", fp16=False,
            disable_tqdm=True, seed=0,
        )
        clock = StepClock(args.warmup)
        trainer = Trainer(model=task.model, args=training, train_dataset=data,
                          data_collator=collator, callbacks=[clock])
        trainer.train()
    return (args.steps - args.warmup) * args.batch_size * tokens_per_example / (clock.end - clock.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--preset", default="nano")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--precision", choices=("no", "bf16"), default="no")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not AGNEWS.is_file():
        raise SystemExit(f"needs the AG News parquet at {AGNEWS}")

    with tempfile.TemporaryDirectory() as tok_dir:
        probe = recipe_from_dict(recipe_dict(args, tok_dir, tok_dir))
        train_tokenizer(iter_texts(load_data(probe.data)), tok_dir, vocab_size=args.vocab_size)
        raw = load_data(probe.data, required=("text",))
        packed_task = build_task(probe)
        padded_task = build_task(recipe_from_dict(recipe_dict(args, tok_dir, tok_dir, packing=False)))
        packed = packed_task.prepare_dataset(raw)
        padded = padded_task.prepare_dataset(raw)
        pad_id = packed_task.tokenizer.pad_token_id
        packed_tokens, padded_tokens = mean_tokens(packed, pad_id), mean_tokens(padded, pad_id)
        results: dict[str, list[float]] = {"mmssl": [], "Trainer (packed)": [], "Trainer (padded)": []}
        for _ in range(args.repeats):
            results["mmssl"].append(run_mmssl(args, tok_dir, packed_tokens))
            fresh = build_task(probe)  # a new, identically initialised model for each Trainer run
            results["Trainer (packed)"].append(run_trainer(args, fresh, packed, packed_tokens))
            fresh = build_task(probe)
            results["Trainer (padded)"].append(run_trainer(args, fresh, padded, padded_tokens))
        vocab = len(packed_task.tokenizer)

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor()
    print(f"machine: {platform.machine()} {device or 'cpu'}, {os.cpu_count()} cores, "
          f"load avg {os.getloadavg()[0]:.1f}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"BertForMaskedLM preset {args.preset}, vocab {vocab}, max_length {args.max_length}, "
          f"batch {args.batch_size}, precision {args.precision}, {args.steps} steps "
          f"(timed after {args.warmup}), {args.workers} workers")
    print(f"real tokens per example: packed {packed_tokens:.1f}, padded (one text) {padded_tokens:.1f}")
    ours = statistics.median(results["mmssl"])
    for name, runs in results.items():
        print(f"{name:<17} tokens/s: median {statistics.median(runs):9.0f}  "
              f"runs {[round(x) for x in runs]}")
    for name in ("Trainer (packed)", "Trainer (padded)"):
        print(f"ratio mmssl/{name}: {ours / statistics.median(results[name]):.2f}")


if __name__ == "__main__":
    main()
