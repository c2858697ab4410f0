"""Label efficiency against honest baselines: one command per modality.

Pretrains the modality's recipe (with the online monitor), then ``mmssl eval`` with the
linear probe, kNN and fine-tuning at 1%, 10% and 100% of the labels, next to the raw input,
the same network at random init and the same network trained from scratch on the labels,
all in the same run on the same splits. Prints the table of docs/benchmarks.md, the verdict
lines, and writes the monitor's curve as a PNG.

    python bench/label_efficiency.py --modality text [KEY=VALUE ...]
    python bench/label_efficiency.py --modality audio --monitor-png docs/img/monitor_audio.png

Run it with OMP_NUM_THREADS set to the cores you mean to use (the numbers in the docs say).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import torch
import transformers

from mmssl.api import pretrain
from mmssl.eval.monitor import plot_monitor
from mmssl.recipe import load_recipe

RECIPES = {
    "image": "recipes/simclr_resnet_cifar10.yaml",
    "audio": "recipes/simclr_logmel_allclips_fsdd.yaml",
    "text": "recipes/simclr_words_agnews.yaml",
}
ROWS = {"raw_input": "raw input", "random_init": "random init",
        "supervised_from_scratch": "supervised from scratch", "pretrained": "pretrained (mmssl)"}
PROTOCOLS = {"linear": "linear", "knn": "kNN", "finetune": "fine-tune"}
FRACTIONS = ("0.01", "0.1", "1.0")


def table(results: dict) -> str:
    """Rows: the baselines and the pretrained model; columns: protocol x label fraction.
    The raw input has no fine-tune cells (there is no network to train)."""
    header = "| model | " + " | ".join(f"{name} {float(f) * 100:g}%" for name in PROTOCOLS.values()
                                      for f in FRACTIONS) + " |"
    lines = [header, "| --- |" + " --- |" * (len(PROTOCOLS) * len(FRACTIONS))]
    for model, name in ROWS.items():
        cells = []
        for protocol in PROTOCOLS:
            scores = {} if model == "raw_input" and protocol == "finetune" else \
                results.get(model, {}).get(protocol, {})
            cells += [f"{scores[f]['top1']:.3f}" if f in scores else "-" for f in FRACTIONS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modality", choices=sorted(RECIPES), required=True)
    parser.add_argument("--recipe", help="another recipe than the modality's")
    parser.add_argument("--out", default="bench/out", help="folder for the run (replaced)")
    parser.add_argument("--monitor-png", help="where to write the monitor's curve")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    path = args.recipe or RECIPES[args.modality]
    name = load_recipe(path).name
    run_dir = Path(args.out) / name
    shutil.rmtree(run_dir, ignore_errors=True)
    overrides = [f"output_dir={run_dir}", "eval.protocols=[linear,knn,finetune]",
                 "eval.label_fractions=[0.01,0.1,1.0]", *args.overrides]
    print(f"machine: {platform.machine()} cpu, {os.cpu_count()} cores, load avg before "
          f"{os.getloadavg()[0]:.1f}; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"threads {torch.get_num_threads()}")
    started = time.time()
    result = pretrain(path, overrides)
    elapsed = time.time() - started
    states = sorted(run_dir.glob("checkpoints/*/trainer_state.json"))
    state = json.loads(states[-1].read_text()) if states else {}
    wall_s, cpu_s = state.get("elapsed_s", float("nan")), state.get("cpu_s", float("nan"))
    print(f"recipe {path} {' '.join(args.overrides)}: {result.step} steps, pretraining "
          f"{wall_s / 60:.1f} min wall, {cpu_s / 60:.1f} CPU-min; pretraining + eval {elapsed / 60:.1f} min wall, "
          f"load avg after {os.getloadavg()[0]:.1f}")
    report = result.eval.report
    print(table(report["results"]))
    for line in report["verdicts"].values():
        print(f"- {line}")
    if args.monitor_png:
        plot_monitor(run_dir / "metrics.jsonl", Path(args.monitor_png), f"Online monitor: {name}")
        print(f"monitor curve: {args.monitor_png}")


if __name__ == "__main__":
    main()
