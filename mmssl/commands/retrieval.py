"""``mmssl retrieval RUN_DIR``: cross-modal retrieval and zero-shot metrics of a clip run."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "evaluate a clip run: retrieval R@1/5/10 both ways and zero-shot accuracy (eval/alignment.json)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", help="a run directory written by `mmssl pretrain` with task: clip, or its dual-encoder export"
    )
    parser.add_argument("--split", default="test", help="the split of the recipe's data to score (default: test)")
    parser.add_argument("--max-examples", type=int, default=None, help="score only the first N examples of each set")
    parser.add_argument("--batch-size", type=int, default=256)


def format_report(report: dict[str, Any]) -> str:
    """The alignment report as Markdown tables: R@k each way, then zero-shot accuracy."""
    sizes = ", ".join(f"{n} {name}" for name, n in report.get("num_examples", {}).items())
    lines = [f"Split `{report['split']}` ({report['pairing']} pairing; {sizes})", ""]
    retrieval = report.get("retrieval", {})
    directions = list(dict.fromkeys(key.split("/")[0] for key in retrieval))
    if directions:
        ks = [key.split("@")[1] for key in retrieval if key.startswith(f"{directions[0]}/R@")]
        lines += ["| retrieval | " + " | ".join(f"R@{k}" for k in ks) + " | chance R@1 |",
                  "| --- |" + " ---: |" * (len(ks) + 1)]
        for d in directions:
            cells = [f"{retrieval[f'{d}/R@{k}']:.4f}" for k in ks] + [f"{retrieval[f'{d}/chance@1']:.4f}"]
            lines.append(f"| {d.replace('_', ' ')} | " + " | ".join(cells) + " |")
    zero_shot = report.get("zero_shot", {})
    if zero_shot:
        lines += ["", "| zero-shot | top-1 | top-5 | chance |", "| --- | ---: | ---: | ---: |"]
        for name, scores in zero_shot.items():
            top5 = f"{scores['top5']:.4f}" if "top5" in scores else "-"
            lines.append(f"| {name.replace('_', ' ')} | {scores['top1']:.4f} | {top5} | {scores['chance']:.4f} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from mmssl.eval.alignment import evaluate_run

    report, path = evaluate_run(args.run_dir, args.split, args.max_examples, args.batch_size)
    print(format_report(report))
    print(f"\nReport: {path}")
    return 0
