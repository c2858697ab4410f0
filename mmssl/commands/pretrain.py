"""``mmssl pretrain RECIPE [key=value ...]``: run a recipe's pretraining."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from mmssl import api
from mmssl.api import DryRunResult, PretrainResult
from mmssl.recipe import recipe_to_dict

HELP = "pretrain with a recipe (YAML), optionally overriding fields as key.sub=value"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="a recipe YAML file, or a shipped recipe's name (see `mmssl recipes`)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. train.lr=3e-4")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        metavar="CHECKPOINT",
        help="continue from the run's latest checkpoint that verifies, or from the one given "
        "(an existing path); an error if there is none",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start again from scratch in an output_dir that holds an earlier run "
        "(its checkpoints and logs move to OUTPUT_DIR/abandoned/)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check recipe, data, tokenizer and model; print the resolved recipe, sizes and steps; do not train",
    )


RESUME_WORDS = ("latest", "auto", "never")


def split_resume(args: argparse.Namespace) -> None:
    """Only an existing path is taken as ``--resume``'s checkpoint; ``--resume key=value``
    is ``--resume`` followed by an override (argparse gives the flag the next word)."""
    value = args.resume
    if value is None or value in RESUME_WORDS or "=" not in value or Path(value).exists():
        return  # a path that does not exist fails in pretrain, after the recipe is checked
    args.resume = "latest"
    args.overrides = [*args.overrides, value]


def describe_run_dir(result: PretrainResult) -> str:
    """A short map of what the run directory holds, printed at the end of a run."""
    run_dir = result.run_dir
    recipe = run_dir / "recipe.yaml"
    lines = [f"Run directory: {run_dir}"]
    entries = {
        "recipe.yaml": f"the resolved recipe (rerun with: mmssl pretrain {recipe} output_dir={run_dir}-rerun)",
        "environment.json": "versions and devices",
        "metrics.jsonl": "logged metrics, one JSON object per line",
        "tensorboard": f"TensorBoard logs (tensorboard --logdir {run_dir / 'tensorboard'})",
        "checkpoints": "checkpoints (model.safetensors, optimizer, scheduler, RNG, trainer_state.json)",
        "eval": "evaluation reports",
        "abandoned": "checkpoints and logs a resume or --overwrite moved aside (docs/reliability.md)",
    }
    for name, what in entries.items():
        if (run_dir / name).exists():
            lines.append(f"  {name:<17} {what}")
    if result.checkpoint:
        lines.append(f"Last checkpoint: {result.checkpoint} (continue with: mmssl pretrain {recipe} --resume)")
    if result.bad_examples:
        lines.append(f"Skipped bad examples: {result.bad_examples}")
    return "\n".join(lines)


def describe_dry_run(result: DryRunResult) -> str:
    """The resolved recipe and what the run would do, for ``--dry-run``."""
    recipe = result.recipe
    sizes = [f"{result.examples:,} training examples" if result.examples is not None
             else "streamed training data (size unknown)"]
    sizes += [f"{count:,} {split} examples for eval" for split, count in result.eval_examples.items()]
    epochs = f" ({result.epochs:g} epochs)" if result.epochs is not None else ""
    return "\n".join([
        yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False).rstrip(),
        "",
        f"Dry run of {recipe.name!r} ({recipe.task.name}): the recipe, data, tokenizer and model are valid.",
        f"  data:       {', '.join(sizes)}",
        f"  parameters: {result.parameters:,} ({result.trainable_parameters:,} trainable)",
        f"  training:   {result.steps:,} steps of {recipe.train.batch_size} x {recipe.train.grad_accum}{epochs}",
        f"  run dir:    {recipe.run_dir}",
    ])


def run(args: argparse.Namespace) -> int:
    split_resume(args)
    if args.dry_run:
        print(describe_dry_run(api.dry_run(args.recipe, args.overrides)))
        return 0
    result = api.pretrain(args.recipe, args.overrides, resume=args.resume, overwrite=args.overwrite)
    loss = result.loss
    print(f"Finished {result.step} steps" + (f", final loss {loss:.4f}" if loss is not None else ""))
    if result.eval is not None:
        print(result.eval.table())
    print(describe_run_dir(result))
    if result.hub_url:
        print(f"Pushed to the Hub: {result.hub_url}")
    return 0
