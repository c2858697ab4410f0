"""Benchmark: zero-shot cross-modal digit retrieval after a short AV-MNIST alignment.

Trains recipes/clip_av_mnist.yaml or --recipe (MNIST train images paired by digit with FSDD train
recordings) and scores the test splits (2,000 images, 250 recordings): image->audio and
audio->image R@1/5/10 by digit, and zero-shot accuracy by the other modality's class
prototypes. The same model before alignment (same seed) is scored in the same run as the
baseline, and, when the towers start from SSL runs (``task.towers.<m>.init_from``), the same
architecture with fresh towers too; chance is 10%. Prints the JSON and a Markdown table.

    .venv/bin/python bench/clip_av_mnist.py [--recipe R] [--max-steps N] [--out DIR] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from typing import Any

import torch

from mmssl.eval.alignment import evaluate_alignment
from mmssl.recipe import load_recipe
from mmssl.tasks.base import build_task
from mmssl.train.loop import pretrain
from mmssl.weights import load_run


def table(scores: dict[str, dict[str, Any]]) -> str:
    """R@1/5/10 both ways and zero-shot top-1 for each scored model, with chance."""
    names = list(scores)
    first = scores[names[0]]
    lines = [f"| metric | {' | '.join(names)} | chance |", "| --- |" + " --- |" * (len(names) + 1)]
    for key in first["retrieval"]:
        direction, metric = key.split("/")
        if metric.startswith("R@"):
            chance = f"{first['retrieval'][f'{direction}/chance@1']:.3f}" if metric == "R@1" else "-"
            values = " | ".join(f"{scores[n]['retrieval'][key]:.3f}" for n in names)
            lines.append(f"| {direction.replace('_', ' ')} {metric} | {values} | {chance} |")
    for zs in first["zero_shot"]:
        values = " | ".join(f"{scores[n]['zero_shot'][zs]['top1']:.3f}" for n in names)
        lines.append(f"| zero-shot {zs.replace('_', ' ')} top-1 | {values} | {first['zero_shot'][zs]['chance']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-steps", type=int, default=None, help="default: the recipe's train.max_steps")
    parser.add_argument("--recipe", default="recipes/clip_av_mnist.yaml")
    parser.add_argument("--out", default="runs/bench_clip_av_mnist")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (2 on 2 busy cores oversubscribe)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shutil.rmtree(args.out, ignore_errors=True)
    overrides = [f"output_dir={args.out}", "train.progress=false", "train.cpu=true", *args.overrides]
    if args.max_steps is not None:
        overrides += [f"train.max_steps={args.max_steps}", "train.epochs=null"]
    recipe = load_recipe(args.recipe, overrides)
    baselines = {"before alignment": recipe}
    if any(tower.init_from for tower in recipe.task.towers.values()):
        # towers from SSL runs: also score the same architecture with fresh towers
        baselines["random init"] = load_recipe(args.recipe, overrides + [
            f"task.towers.{m}.init_from=null" for m in recipe.task.towers])
    scores = {}
    for name, baseline in baselines.items():
        torch.manual_seed(baseline.seed)
        scores[name] = evaluate_alignment(build_task(baseline))
    start = time.perf_counter()
    result = pretrain(recipe)
    train_s = time.perf_counter() - start
    scores = {"trained": evaluate_alignment(load_run(args.out)[1]), **scores}
    print(json.dumps({
        "steps": result.step, "train_seconds": round(train_s, 1), "final_loss": result.last_metrics.get("loss"),
        **scores,
    }, indent=2))
    print(table(scores))


if __name__ == "__main__":
    main()
