"""``mmssl pretrain RECIPE [key=value ...]``: run a recipe's pretraining."""

from __future__ import annotations

import argparse

from mmssl.recipe import load_recipe

HELP = "pretrain with a recipe (YAML), optionally overriding fields as key.sub=value"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="path to a recipe YAML file")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. train.lr=3e-4")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="CHECKPOINT",
        help="continue from the run's latest checkpoint, or from the one given",
    )


def describe_run_dir(result) -> str:
    """A short map of what the run directory holds, printed at the end of a run."""
    run_dir = result.run_dir
    lines = [f"Run directory: {run_dir}"]
    entries = {
        "recipe.yaml": "the resolved recipe (rerun with: mmssl pretrain <this file>)",
        "environment.json": "versions and devices",
        "metrics.jsonl": "logged metrics, one JSON object per line",
        "tensorboard": f"TensorBoard logs (tensorboard --logdir {run_dir / 'tensorboard'})",
        "checkpoints": "checkpoints (model.safetensors, optimizer, scheduler, RNG, trainer_state.json)",
        "eval": "evaluation reports",
    }
    for name, what in entries.items():
        if (run_dir / name).exists():
            lines.append(f"  {name:<17} {what}")
    if result.checkpoint:
        lines.append(f"Last checkpoint: {result.checkpoint}")
    if result.bad_examples:
        lines.append(f"Skipped bad examples: {result.bad_examples}")
    return "\n".join(lines)


def check_hub(recipe) -> None:
    """Fail before training, not after it, when ``hub.push`` cannot work."""
    from mmssl.hub.push import HubError, require_token

    if not recipe.hub.repo_id:
        raise HubError("hub.repo_id: required with hub.push: true (e.g. your-user/mae-cifar10)")
    require_token()


def push_run(recipe, run_dir) -> None:
    """``hub.push``: export the finished run and push it, from the main process only."""
    from accelerate import PartialState

    from mmssl.hub.push import push

    if not PartialState().is_main_process:
        return
    hub = recipe.hub
    url = push(run_dir, hub.repo_id, private=hub.private, revision=hub.revision,
               commit_message=hub.commit_message)
    print(f"Pushed to the Hub: {url}")


def run(args: argparse.Namespace) -> int:
    from mmssl.train.loop import pretrain

    recipe = load_recipe(args.recipe, args.overrides)
    if recipe.hub.push:
        check_hub(recipe)
    result = pretrain(recipe, resume=args.resume)
    loss = result.last_metrics.get("loss")
    print(f"Finished {result.step} steps" + (f", final loss {loss:.4f}" if loss is not None else ""))
    if recipe.eval is not None:
        from mmssl.eval.report import markdown_table
        from mmssl.eval.runner import evaluate_run

        report, _ = evaluate_run(result.run_dir)
        print(markdown_table(report))
    print(describe_run_dir(result))
    if recipe.hub.push:
        push_run(recipe, result.run_dir)
    return 0
