"""Time to accuracy on CIFAR-10: MAE, data2vec 1.0 and data2vec 2.0, one after the other in
one process, each with the same training-time budget, the same ViT, data and optimizer.

Training time is the process's CPU time spent in training steps (run with one torch thread:
``OMP_NUM_THREADS=1``), which is the wall-clock time of a dedicated core: on shared cores the
wall clock also counts other jobs' turns and would make the comparison depend on the load.
Probe accuracy (weighted kNN and a linear probe on frozen mean-pooled features) is measured
at log-spaced points of each method's training time (the probes' own time is not counted)
on a validation split carved from CIFAR-10 *train*; the test split is never read. Reported:
the curves (one PNG), a Markdown table, and the speed-up of each method to reach MAE's
final accuracy. Run from the repository root:

    OMP_NUM_THREADS=1 python bench/time_to_accuracy.py --seconds 300 --out bench/out/tta

Splits of the 10,000 train images, after one fixed shuffle: pretraining rows 0-8,499 (no
labels used), linear/kNN probe training rows 0-1,999, probe hyper-parameter choice rows
8,500-8,999, reported validation accuracy rows 9,000-9,999.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import time
from pathlib import Path

import matplotlib
import pyarrow.parquet as pq
import torch
import transformers
from PIL import Image

from mmssl.eval.knn import knn_classify
from mmssl.eval.linear import linear_probe
from mmssl.recipe import recipe_from_dict
from mmssl.tasks.base import build_task

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the headless backend)

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10" / "train.parquet"
MEAN, STD = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2470, 0.2435, 0.2616])
PRETRAIN, PROBE_TRAIN, PROBE_SELECT, PROBE_VAL = (0, 8500), (0, 2000), (8500, 9000), (9000, 10000)

VIT = {"patch_size": 4}
#: method -> task section; data2vec 1.0 as recipes/data2vec_vision_cifar10.yaml, data2vec 2.0
#: as recipes/data2vec2_vision_cifar10.yaml, MAE as recipes/mae_mnist.yaml.
METHODS = {
    "MAE": {"name": "mae", "mask_ratio": 0.75, "norm_pix_loss": True},
    "data2vec 1.0": {"name": "data2vec", "modality": "vision", "mask_ratio": 0.6, "top_k": 3,
                     "momentum": 0.998, "final_momentum": 0.9999, "loss_beta": 2.0},
    "data2vec 2.0": {"name": "data2vec2", "modality": "vision", "mask_ratio": 0.8, "mask_block": 2,
                     "num_masks": 4, "top_k": 3, "momentum": 0.998, "final_momentum": 0.9999,
                     "decoder_dim": 64, "decoder_layers": 2, "decoder_groups": 8},
}


def load_images(limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All train images decoded once to normalised ``[N, 3, 32, 32]`` floats, and labels, in a
    fixed random order (the file is sorted by class, so row ranges would hold few classes)."""
    table = pq.read_table(CIFAR).to_pydict()
    order = torch.randperm(len(table["label"]), generator=torch.Generator().manual_seed(0))[:limit].tolist()
    cells = [table["image"][i] for i in order]
    pixels = torch.stack([
        torch.frombuffer(bytearray(Image.open(io.BytesIO(c["bytes"])).convert("RGB").tobytes()),
                         dtype=torch.uint8).view(32, 32, 3)
        for c in cells
    ]).permute(0, 3, 1, 2).float() / 255
    return (pixels - MEAN[:, None, None]) / STD[:, None, None], torch.tensor([table["label"][i] for i in order])


def rows(x: torch.Tensor, span: tuple[int, int]) -> torch.Tensor:
    return x[span[0]: span[1]]


def train_batch(images: torch.Tensor, batch_size: int, generator: torch.Generator) -> dict:
    """A random batch with random horizontal flips: the same views for every method."""
    idx = torch.randint(0, len(images), (batch_size,), generator=generator)
    x = images[idx]
    flip = torch.rand(batch_size, generator=generator) < 0.5
    return {"pixel_values": torch.where(flip[:, None, None, None], x.flip(-1), x)}


@torch.no_grad()
def features(task, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    task.eval()
    out = torch.cat([task.embed({"pixel_values": images[i: i + batch_size]}, "mean")
                     for i in range(0, len(images), batch_size)])
    task.train()
    return out


def probe(task, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """kNN and linear top-1 on the validation rows (linear hyper-parameters on the select rows)."""
    train, select, val = ((features(task, rows(images, span)), rows(labels, span))
                          for span in (PROBE_TRAIN, PROBE_SELECT, PROBE_VAL))
    knn = knn_classify(*train, *val, num_classes=10)["top1"]
    linear = linear_probe(train, select, val, 10, lrs=(1e-3, 1e-2, 1e-1), weight_decays=(0.0,), epochs=50)
    return {"knn": knn, "linear": linear.top1}


def lr_at(progress: float, base: float, warmup: float = 0.05) -> float:
    """Linear warmup then cosine, over the fraction of the time budget spent."""
    if progress < warmup:
        return base * progress / warmup
    return base * 0.5 * (1 + math.cos(math.pi * min((progress - warmup) / (1 - warmup), 1.0)))


def run_method(name: str, args: argparse.Namespace, images: torch.Tensor, labels: torch.Tensor) -> dict:
    torch.manual_seed(args.seed)
    recipe = recipe_from_dict({
        "name": f"tta-{name}", "task": METHODS[name],
        "model": {"preset": args.preset, "config": VIT},
        "data": {"source": "parquet", "data_files": {"train": str(CIFAR)},
                 "image": {"size": 32, "mean": MEAN.tolist(), "std": STD.tolist()}},
        "train": {"batch_size": args.batch_size, "max_steps": 1},
    })
    task = build_task(recipe).train()
    params = [p for p in task.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05, betas=(0.9, 0.95))
    generator = torch.Generator().manual_seed(args.seed)
    pool = rows(images, PRETRAIN)
    checkpoints = [args.seconds * 2.0 ** -k for k in range(args.points - 1, -1, -1)]
    curve = [{"seconds": 0.0, "step": 0, **probe(task, images, labels)}]
    print(json.dumps({"method": name, **curve[-1]}), flush=True)
    spent, step, total_steps = 0.0, 0, None
    while checkpoints:
        start = time.process_time()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(spent / args.seconds, args.lr)
        loss = task(train_batch(pool, args.batch_size, generator)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        step += 1
        if total_steps is None and step == 10:  # EMA schedule over the steps the budget allows
            total_steps = max(int(args.seconds / (spent / 8)), 10) if spent else 10
        task.on_step_end(step, total_steps or 10 * step)
        spent += time.process_time() - start if step > 1 else 0.0  # step 1: one-off warm-up
        if spent >= checkpoints[0]:
            checkpoints.pop(0)
            curve.append({"seconds": round(spent, 1), "step": step, "loss": round(loss.item(), 4),
                          **probe(task, images, labels)})
            print(json.dumps({"method": name, **curve[-1]}), flush=True)
    return {"method": name, "steps": step, "images_per_s": round(step * args.batch_size / spent, 1),
            "curve": curve}


def time_to_reach(curve: list[dict], metric: str, target: float) -> float | None:
    """The first probed time at which ``metric`` is at least ``target``."""
    return next((p["seconds"] for p in curve if p["seconds"] > 0 and p[metric] >= target), None)


def speedups(results: list[dict]) -> list[dict]:
    mae = next(r for r in results if r["method"] == "MAE")
    out = []
    for metric in ("knn", "linear"):
        target, mae_time = mae["curve"][-1][metric], mae["curve"][-1]["seconds"]
        for r in results:
            reached = time_to_reach(r["curve"], metric, target)
            out.append({"metric": metric, "method": r["method"], "mae_final": target, "seconds": reached,
                        "speedup": round(mae_time / reached, 2) if reached else None})
    return out


def markdown(results: list[dict], gains: list[dict]) -> str:
    lines = ["| method | steps | images/s | " + " | ".join(f"kNN / linear @ {p['seconds']:.0f} s"
                                                        for p in results[0]["curve"]) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in results[0]["curve"]) + " |"]
    for r in results:
        cells = [f"{100 * p['knn']:.1f} / {100 * p['linear']:.1f}" for p in r["curve"]]
        lines.append(f"| {r['method']} | {r['steps']} | {r['images_per_s']} | " + " | ".join(cells) + " |")
    lines += ["", "| probe | method | time to MAE's final accuracy | speed-up over MAE |", "| --- | --- | --- | --- |"]
    for g in gains:
        reached = f"{g['seconds']:.0f} s" if g["seconds"] else "not reached"
        speed = f"{g['speedup']}x" if g["speedup"] else "-"
        lines.append(f"| {g['metric']} ({100 * g['mae_final']:.1f}%) | {g['method']} | {reached} | {speed} |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for ax, metric in zip(axes, ("knn", "linear")):
        for r in results:
            points = [p for p in r["curve"] if p["seconds"] > 0]
            ax.plot([p["seconds"] for p in points], [100 * p[metric] for p in points], "o-", label=r["method"])
        ax.set_xscale("log")
        ax.set_xlabel("training time, s (one thread's CPU time; log)")
        ax.set_ylabel(f"{metric} top-1 on CIFAR-10 val (%)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("Time to accuracy, ViT nano, CIFAR-10 32x32, 1 CPU thread")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="training CPU-time budget per method")
    parser.add_argument("--points", type=int, default=6, help="probe points, log-spaced (halving)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--preset", default="nano")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--out", type=Path, default=Path("bench/out/time_to_accuracy"))
    args = parser.parse_args()
    if not CIFAR.is_file():
        raise SystemExit(f"needs the CIFAR-10 parquet at {CIFAR}")
    args.out.mkdir(parents=True, exist_ok=True)
    images, labels = load_images()
    results = [run_method(name, args, images, labels) for name in args.methods]
    gains = speedups(results) if "MAE" in args.methods else []
    header = (f"machine: {platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
              f"load avg {os.getloadavg()[0]:.1f}; torch {torch.__version__}, transformers {transformers.__version__}")
    table = markdown(results, gains)
    (args.out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "results": results, "speedups": gains}, indent=2))
    (args.out / "table.md").write_text(header + "\n\n" + table + "\n")
    plot(results, args.out / "time_to_accuracy.png")
    print(header)
    print(table)


if __name__ == "__main__":
    main()
