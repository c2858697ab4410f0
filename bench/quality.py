"""Quality benchmark: pretrain a shipped recipe, then score it against its baselines.

The bar (docs/benchmarks.md): with at most 30 CPU-minutes of pretraining, the pretrained
backbone must beat its baselines (random init, raw input, supervised from scratch); the
report's verdict lines say where it does.

    python bench/quality.py recipes/mae_mnist.yaml [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
import transformers

from mmssl.eval.report import markdown_table
from mmssl.eval.runner import evaluate_run
from mmssl.recipe import load_recipe
from mmssl.train.loop import pretrain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    recipe = load_recipe(args.recipe, args.overrides)
    print(f"machine: {platform.machine()} cpu, {os.cpu_count()} cores, "
          f"load avg before {os.getloadavg()[0]:.1f}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"threads {torch.get_num_threads()}, cuda {torch.cuda.is_available()}")
    started = time.time()
    result = pretrain(recipe)
    pretrain_s = time.time() - started
    print(f"pretrain: {result.step} steps in {pretrain_s / 60:.1f} min, "
          f"final loss {result.last_metrics.get('loss', float('nan')):.4f}")
    started = time.time()
    report, paths = evaluate_run(result.run_dir)
    print(f"eval: {(time.time() - started) / 60:.1f} min, load avg after {os.getloadavg()[0]:.1f}")
    print(markdown_table(report))
    summary = {
        "recipe": args.recipe, "overrides": args.overrides, "pretrain_minutes": pretrain_s / 60,
        "results": report["results"],
    }
    print(json.dumps(summary))
    for line in report.get("verdicts", {}).values():
        print(line)


if __name__ == "__main__":
    main()
