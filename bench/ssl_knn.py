"""kNN and linear-probe accuracy on CIFAR-10 after the same short pretraining budget for
each image SSL task, against the same architecture at random init (the floor).

Run from the repository root (recipes read ../shared/data):

    .venv/bin/python bench/ssl_knn.py --steps 150 --batch-size 64 --max-train 5000 --max-test 1000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from mmssl.eval.runner import evaluate_run
from mmssl.recipe import EvalConfig, load_recipe
from mmssl.train.loop import pretrain

RECIPES = ["simclr_cifar10", "dino_cifar10", "data2vec_vision_cifar10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-train", type=int, default=5000)
    parser.add_argument("--max-test", type=int, default=1000)
    parser.add_argument("--recipes", nargs="+", default=RECIPES)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.recipes:
            overrides = [f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size}",
                         f"train.warmup_steps={args.steps // 10}", "train.progress=false",
                         f"train.save_every={args.steps}", f"output_dir={tmp}/{name}"]
            recipe = load_recipe(Path("recipes") / f"{name}.yaml", overrides)
            start = time.perf_counter()
            pretrain(recipe)
            seconds = time.perf_counter() - start
            cfg = EvalConfig(protocols=["knn", "linear"], data=None, pooling="mean",
                             max_train_examples=args.max_train, max_test_examples=args.max_test)
            report, _ = evaluate_run(recipe.run_dir, cfg)
            res = report["results"]
            row = {"task": recipe.task.name, "steps": args.steps, "batch_size": args.batch_size,
                   "train_seconds": round(seconds, 1)}
            for model in ("pretrained", "random_init"):
                row[f"{model}_knn_top1"] = res[model]["knn"]["1.0"].get("top1")
                row[f"{model}_linear_top1"] = res[model]["linear"]["1.0"].get("top1")
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
