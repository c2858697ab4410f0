"""``mmssl eval RUN_DIR [--data DIR] [--protocol ...] [key=value ...]``: downstream evaluation."""

from __future__ import annotations

import argparse

HELP = "evaluate a run: linear probe, kNN, fine-tune at label fractions, CLIP alignment; vs random init"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="an mmssl run directory (holds recipe.yaml and checkpoints)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="fields of the eval section, e.g. label_fractions=[0.1,1.0] knn_k=10",
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="evaluate on DIR/<split>.parquet instead of the pretraining data",
    )
    parser.add_argument(
        "--protocol",
        action="append",
        choices=["linear", "knn", "finetune", "alignment"],
        help="protocol to run (repeat for several); default: the recipe's eval.protocols",
    )
    parser.add_argument("--checkpoint", help="a checkpoint folder instead of the run's latest")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from mmssl.eval.report import markdown_table
    from mmssl.eval.runner import data_dir_config, evaluate_run, resolve_eval_config
    from mmssl.runs import load_recipe

    recipe_file = Path(args.run_dir) / "recipe.yaml"
    if not recipe_file.is_file():
        raise FileNotFoundError(f"{args.run_dir}: no recipe.yaml (is it an mmssl run directory?)")
    recipe = load_recipe(recipe_file)
    overrides = list(args.overrides)
    if args.protocol:
        overrides.append(f"protocols=[{','.join(args.protocol)}]")
    cfg = resolve_eval_config(recipe, overrides, "command line")
    if args.data:
        base = cfg.data or recipe.data
        cfg = dataclasses.replace(
            cfg, data=data_dir_config(base, args.data, (base.split, cfg.test_split))
        )
    report, paths = evaluate_run(args.run_dir, cfg, args.checkpoint)
    print(markdown_table(report))
    plots = [str(paths[k]) for k in ("label_efficiency", "features") if k in paths]
    print(f"Report: {paths['json']}, {paths['markdown']}" + (f"; plots: {', '.join(plots)}" if plots else ""))
    return 0
