"""Benchmark: zero-shot cross-modal digit retrieval after a short AV-MNIST alignment.

Trains recipes/clip_av_mnist.yaml (MNIST train images paired by digit with FSDD train
recordings) and scores the test splits (2,000 images, 250 recordings): image->audio and
audio->image R@1/5/10 by digit, and zero-shot accuracy by the other modality's class
prototypes. The same model untrained (same seed) is scored from the same run as the
baseline; chance is 10%.

    .venv/bin/python bench/clip_av_mnist.py [--epochs 5] [--out runs/bench_clip_av_mnist]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time

import torch

from mmssl.eval.alignment import evaluate_alignment
from mmssl.recipe import load_recipe
from mmssl.tasks.base import build_task
from mmssl.train.loop import pretrain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default="runs/bench_clip_av_mnist")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shutil.rmtree(args.out, ignore_errors=True)
    recipe = load_recipe(
        "recipes/clip_av_mnist.yaml",
        [f"train.epochs={args.epochs}", f"output_dir={args.out}", "train.progress=false", "train.cpu=true"],
    )
    torch.manual_seed(recipe.seed)
    untrained = evaluate_alignment(build_task(recipe))
    start = time.perf_counter()
    result = pretrain(recipe)
    train_s = time.perf_counter() - start
    from mmssl.runs import load_run

    trained = evaluate_alignment(load_run(args.out)[1])
    print(json.dumps({
        "steps": result.step, "train_seconds": round(train_s, 1), "final_loss": result.last_metrics.get("loss"),
        "trained": trained, "untrained": untrained,
    }, indent=2))


if __name__ == "__main__":
    main()
