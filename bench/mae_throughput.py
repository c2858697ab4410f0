"""MAE training throughput: mmssl's loop against transformers' Trainer, in one run.

Both train the same ``ViTMAEForPreTraining`` config on the same CIFAR-10 images with the
same preprocessing, batch size, optimizer settings and precision; images/s is measured
between step ``--warmup`` and the last step, so start-up and the first slow steps are left
out of both. The two are run alternately ``--repeats`` times and the medians reported.

    python bench/mae_throughput.py --steps 60 --batch-size 64 --preset nano
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from pathlib import Path

import torch
import transformers
from timing import StepClock, mmssl_samples_per_s
from transformers import Trainer, TrainingArguments

from mmssl.data.examples import MapExamples
from mmssl.data.sources import load_data
from mmssl.recipe import recipe_from_dict
from mmssl.tasks.base import build_task
from mmssl.train.loop import pretrain

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10" / "train.parquet"


def recipe_dict(args: argparse.Namespace, out: str) -> dict:
    return {
        "name": "bench-mae",
        "output_dir": out,
        "task": {"name": "mae", "mask_ratio": 0.75},
        "model": {"preset": args.preset, "config": {"patch_size": 4}},
        "data": {"source": "parquet", "data_files": {"train": str(CIFAR)},
                 "num_workers": args.workers, "image": {"size": 32}},
        "train": {"batch_size": args.batch_size, "max_steps": args.steps, "lr": 1e-3,
                  "warmup_steps": 0, "max_grad_norm": 1.0, "precision": "no",
                  "log_every": args.warmup, "save_every": 0, "progress": False},
    }


def run_mmssl(args: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory() as out:
        recipe = recipe_from_dict(recipe_dict(args, out))
        pretrain(recipe)
        return mmssl_samples_per_s(out, args.warmup)


def run_trainer(args: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory() as out:
        recipe = recipe_from_dict(recipe_dict(args, out))
        task = build_task(recipe)  # the same model config and preprocessing as mmssl
        data = load_data(recipe.data, required=task.required_columns)
        examples = MapExamples(data, task.preprocess, "raise", recipe.seed)

        def collate(batch):
            return {"pixel_values": task.collate(batch)["pixel_values"]}

        training = TrainingArguments(
            output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.batch_size,
            learning_rate=1e-3, weight_decay=0.05, adam_beta2=0.95, warmup_steps=0,
            lr_scheduler_type="cosine", max_grad_norm=1.0, logging_steps=10_000,
            save_strategy="no", report_to=[], dataloader_num_workers=args.workers,
            use_cpu=not torch.cuda.is_available(), bf16=False, fp16=False,
            remove_unused_columns=False, disable_tqdm=True, seed=0,
        )
        clock = StepClock(args.warmup)
        trainer = Trainer(model=task.model, args=training, train_dataset=examples,
                          data_collator=collate, callbacks=[clock])
        trainer.train()
    return (args.steps - args.warmup) * args.batch_size / (clock.end - clock.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--preset", default="nano")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not CIFAR.is_file():
        raise SystemExit(f"needs the CIFAR-10 parquet at {CIFAR}")

    ours, theirs = [], []
    for _ in range(args.repeats):
        ours.append(run_mmssl(args))
        theirs.append(run_trainer(args))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor()
    print(f"machine: {platform.machine()} {device or 'cpu'}, {os.cpu_count()} cores, "
          f"load avg {os.getloadavg()[0]:.1f}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"ViT-MAE preset {args.preset}, 32x32 images, patch 4, batch {args.batch_size}, "
          f"fp32, {args.steps} steps (timed after {args.warmup}), {args.workers} workers")
    print(f"mmssl   images/s: median {statistics.median(ours):.1f}  runs {[round(x, 1) for x in ours]}")
    print(f"Trainer images/s: median {statistics.median(theirs):.1f}  runs {[round(x, 1) for x in theirs]}")
    print(f"ratio mmssl/Trainer: {statistics.median(ours) / statistics.median(theirs):.2f}")


if __name__ == "__main__":
    main()
