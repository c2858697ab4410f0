"""``mmssl eval RUN_DIR [--data SPEC] [--protocol ...] [key=value ...]``: downstream evaluation."""

from __future__ import annotations

import argparse

from mmssl import api

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
        action="append",
        metavar="SPEC",
        help="evaluate on other data: a folder (<split>.parquet files, images, recordings or "
        ".txt), a file, a Hub dataset id, a mapping like a recipe's data: section (YAML text or "
        "a .yaml file), or KEY=VALUE changes to it (repeat --data for several)",
    )
    parser.add_argument(
        "--protocol",
        action="append",
        choices=["linear", "knn", "finetune", "alignment"],
        help="protocol to run (repeat for several); default: the recipe's eval.protocols",
    )
    parser.add_argument("--checkpoint", help="a checkpoint folder instead of the run's latest")


def run(args: argparse.Namespace) -> int:
    result = api.evaluate(args.run_dir, args.overrides, data=args.data, protocols=args.protocol,
                          checkpoint=args.checkpoint)
    paths = result.paths
    print(result.table())
    plots = [str(paths[k]) for k in ("label_efficiency", "features") if k in paths]
    print(f"Report: {paths['json']}, {paths['markdown']}" + (f"; plots: {', '.join(plots)}" if plots else ""))
    return 0
