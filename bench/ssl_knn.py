"""kNN and linear-probe accuracy after the same short pretraining budget for each SSL
recipe (image ones on CIFAR-10, the spectrogram-encoder ones on FSDD), against the same
architecture at random init (the floor), in one run.

Run from the repository root (recipes read ../shared/data):

    .venv/bin/python bench/ssl_knn.py --steps 100 --batch-size 32 --max-train 2000 --max-test 1000

MAE has no CIFAR-10 recipe: ``mae_cifar10`` is ``recipes/mae_mnist.yaml`` with the data
overrides below. Each row also has the loss averaged over the first and the last logged
window, so a task at the floor can be told apart from one whose loss did not move.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from mmssl.eval.runner import evaluate_run
from mmssl.recipe import EvalConfig, load_recipe
from mmssl.train.loop import pretrain

CIFAR10 = ["data.data_files.train=../shared/data/cifar10/train.parquet",
           "data.data_files.test=../shared/data/cifar10/test.parquet",
           "data.image.size=32", "data.image.horizontal_flip=true",
           "data.image.mean=[0.4914,0.4822,0.4465]", "data.image.std=[0.2470,0.2435,0.2616]"]

#: name -> (recipe file, overrides)
RECIPES = {
    "simclr_cifar10": ("simclr_cifar10", []),
    "byol_cifar10": ("byol_cifar10", []),
    "dino_cifar10": ("dino_cifar10", []),
    "data2vec_vision_cifar10": ("data2vec_vision_cifar10", []),
    "mae_cifar10": ("mae_mnist", ["name=mae_cifar10", *CIFAR10]),
    # the registry's other encoders (model.backbone); the FSDD ones probe on FSDD's test split
    "simclr_resnet_cifar10": ("simclr_resnet_cifar10", []),
    "byol_resnet_cifar10": ("byol_resnet_cifar10", []),
    "dino_resnet_cifar10": ("dino_resnet_cifar10", []),
    "simclr_ast_fsdd": ("simclr_ast_fsdd", []),
    "byol_ast_fsdd": ("byol_ast_fsdd", []),
    "dino_ast_fsdd": ("dino_ast_fsdd", []),
    "simclr_logmel_fsdd": ("simclr_logmel_fsdd", ["eval=null"]),  # no monitor during the run
}

#: schedule lengths given in steps, scaled from the recipe's max_steps to the budget
STEP_FIELDS = ("warmup_teacher_temperature_steps", "freeze_last_layer_steps")


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (DataLoader workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def budget_overrides(path: Path, overrides: list[str], steps: int) -> list[str]:
    """The recipe's step-counted schedules (as ``overrides`` leave them) scaled from its
    ``max_steps`` to ``steps``."""
    recipe = load_recipe(path, overrides)
    total = recipe.train.max_steps or steps
    return [f"task.{key}={round(getattr(recipe.task, key) * steps / total)}"
            for key in STEP_FIELDS if hasattr(recipe.task, key)]


def loss_windows(run_dir: Path) -> tuple[float, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    return round(losses[0], 3), round(losses[-1], 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-train", type=int, default=2000)
    parser.add_argument("--max-test", type=int, default=1000)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.recipes:
            file, extra = RECIPES[name]
            path = Path("recipes") / f"{file}.yaml"
            overrides = [*extra, f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size}",
                         f"train.warmup_steps={args.steps // 10}", "train.progress=false",
                         f"train.log_every={max(args.steps // 5, 1)}", f"train.save_every={args.steps}",
                         f"output_dir={tmp}/{name}"]
            recipe = load_recipe(path, overrides + budget_overrides(path, extra, args.steps))
            start, cpu = time.perf_counter(), cpu_seconds()
            pretrain(recipe)
            seconds, cpu_train = time.perf_counter() - start, cpu_seconds() - cpu
            cfg = EvalConfig(protocols=["knn", "linear"], data=None, pooling="mean", label_fractions=[1.0],
                             max_train_examples=args.max_train, max_test_examples=args.max_test)
            report, _ = evaluate_run(recipe.run_dir, cfg)
            res = report["results"]
            first, last = loss_windows(recipe.run_dir)
            row = {"recipe": name, "task": recipe.task.name, "steps": args.steps, "batch_size": args.batch_size,
                   "train_seconds": round(seconds, 1), "train_cpu_seconds": round(cpu_train, 1),
                   "eval_seconds": report["seconds"], "loss_first_window": first, "loss_last_window": last}
            for model in ("pretrained", "random_init"):
                row[f"{model}_knn_top1"] = res[model]["knn"]["1.0"].get("top1")
                row[f"{model}_linear_top1"] = res[model]["linear"]["1.0"].get("top1")
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
