"""``mmssl retrieval RUN_DIR``: cross-modal retrieval and zero-shot metrics of a clip run."""

from __future__ import annotations

import argparse
import json

HELP = "evaluate a clip run: retrieval R@1/5/10 both ways and zero-shot accuracy (eval/alignment.json)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", help="a run directory written by `mmssl pretrain` with task: clip, or its dual-encoder export"
    )
    parser.add_argument("--split", default="test", help="the split of the recipe's data to score (default: test)")
    parser.add_argument("--max-examples", type=int, default=None, help="score only the first N examples of each set")
    parser.add_argument("--batch-size", type=int, default=256)


def run(args: argparse.Namespace) -> int:
    from mmssl.eval.alignment import evaluate_run

    report, path = evaluate_run(args.run_dir, args.split, args.max_examples, args.batch_size)
    print(json.dumps({k: report[k] for k in ("retrieval", "zero_shot") if k in report}, indent=2))
    print(f"Report: {path}")
    return 0
