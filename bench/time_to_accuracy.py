"""Time to accuracy: each method of one modality trained one after the other in one process,
with the same training-time budget, model size, data and optimizer, probed as it trains.

- ``--modality image`` (default): MAE, data2vec 1.0 and data2vec 2.0 on CIFAR-10 (ViT nano).
- ``--modality audio``: wav2vec 2.0 and data2vec 2.0 on FSDD spoken digits (Wav2Vec2 nano).
- ``--modality text``: MLM and data2vec 2.0 on AG News (BERT nano), one sentencepiece
  tokenizer trained once on the pretraining rows and shared by both methods.

Training time is the process's CPU time spent in training steps (run with one torch thread:
``OMP_NUM_THREADS=1``), which is the wall-clock time of a dedicated core: on shared cores the
wall clock also counts other jobs' turns and would make the comparison depend on the load.
Drawing the next batch (decoding, tokenizing: DataLoader workers' work in a real run) is not
counted. Probe accuracy (weighted kNN and a linear probe on frozen mean-pooled features) is
measured at log-spaced points of each method's training time (the probes' own time is not
counted) on a validation split carved from the *train* split; the test split is never read.
Reported: the curves (one PNG), a Markdown table, and the speed-up of each method to reach
the baseline's (MAE, wav2vec 2.0, MLM) final accuracy: the probe time at which the baseline
itself first reached that accuracy over the time at which the method first did (a baseline
whose curve is flat at the end does not count its last points). Run from the repository root:

    OMP_NUM_THREADS=1 python bench/time_to_accuracy.py --seconds 300 --out bench/out/tta
    OMP_NUM_THREADS=1 python bench/time_to_accuracy.py --modality audio --seconds 120 --points 4

``--render DIR`` writes the table and the plot again from ``DIR/results.json`` without training.

Splits of the train rows, after one fixed shuffle (fractions of the rows; CIFAR-10's 10,000
and AG News' 10,001: pretraining 0-85% without labels, probe training 0-20%, probe
hyper-parameter choice 85-90%, reported validation 90-100%; FSDD's 2,250 clips: pretraining
0-1,499, probe training 0-999, choice 1,500-1,749, validation 1,750-2,249). Audio and text
pretrain through the tasks' own data path (``load_data``, ``prepare_dataset``, the training
loop's ``build_loader``), so cropping, packing and masking are those of real training.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import math
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker
import pyarrow.parquet as pq
import torch
import transformers
import yaml
from PIL import Image

from mmssl.data.examples import BAD_KEY, BAD_ROWS_KEY
from mmssl.data.sources import load_data
from mmssl.eval.features import eval_loader
from mmssl.eval.knn import knn_classify
from mmssl.eval.linear import linear_probe
from mmssl.modalities.tokenizer import iter_texts, train_tokenizer
from mmssl.recipe import Recipe, recipe_from_dict, shipped_recipes
from mmssl.tasks.base import PretextTask, build_task
from mmssl.train.loop import build_loader

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the headless backend)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CIFAR = DATA / "cifar10" / "train.parquet"
MEAN, STD = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2470, 0.2435, 0.2616])

#: A split of labelled evaluation batches: ``[(collate_eval batch, labels), ...]``.
EvalSplit = list[tuple[dict[str, torch.Tensor], torch.Tensor]]


@dataclass(frozen=True)
class Splits:
    """Row ranges as fractions of the shuffled train rows: pretraining ``[0, pretrain)``,
    probe training ``[0, probe_train)``, probe choice ``[pretrain, select)``, validation
    ``[select, 1)``."""

    pretrain: float
    probe_train: float
    select: float

    def spans(self, n: int) -> dict[str, range]:
        a, b, c = (int(round(f * n)) for f in (self.pretrain, self.probe_train, self.select))
        return {"pretrain": range(0, a), "probe_train": range(0, b), "select": range(a, c), "val": range(c, n)}


def shuffled_rows(n: int, limit: int | None = None) -> list[int]:
    """One fixed shuffle (the files are sorted by class, so row ranges would hold few classes)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:limit].tolist()


class Modality:
    """What differs between modalities: the methods and their recipes, the pretraining batches
    and the labelled probe splits. The training and probing loop is shared."""

    name: str
    baseline: str
    methods: dict[str, dict[str, Any]]  # method -> recipe (as a dict)
    unit: str  # what one example is, for the throughput column
    title: str
    batch_size: int
    num_classes: int

    def prepare(self, args: argparse.Namespace) -> None:
        """One-off work shared by all methods (decoding, a tokenizer)."""

    def recipe(self, method: str, args: argparse.Namespace) -> Recipe:
        tree = copy.deepcopy(self.methods[method])
        tree["name"] = f"tta-{self.name}-{method}"
        tree["output_dir"] = str(args.out / "runs" / method.replace(" ", "_"))
        tree.setdefault("train", {}).update({"batch_size": args.batch_size, "max_steps": 1})
        return recipe_from_dict(tree)

    def batches(self, task: PretextTask, recipe: Recipe, args: argparse.Namespace) -> Iterator[dict]:
        raise NotImplementedError

    def probe_splits(self, task: PretextTask) -> tuple[EvalSplit, EvalSplit, EvalSplit]:
        """Probe training, probe choice and validation batches, made once per method."""
        raise NotImplementedError


class ImageModality(Modality):
    """CIFAR-10, decoded once into tensors; batches with random flips, the same for every method."""

    name, baseline, unit, batch_size, num_classes = "image", "MAE", "images", 64, 10
    title = "Time to accuracy, ViT nano, CIFAR-10 32x32, 1 CPU thread"
    splits = Splits(0.85, 0.2, 0.9)
    #: task sections: data2vec 1.0 as recipes/data2vec_vision_cifar10.yaml, data2vec 2.0 as
    #: recipes/data2vec2_vision_cifar10.yaml, MAE as recipes/mae_mnist.yaml.
    tasks = {
        "MAE": {"name": "mae", "mask_ratio": 0.75, "norm_pix_loss": True},
        "data2vec 1.0": {"name": "data2vec", "modality": "vision", "mask_ratio": 0.6, "top_k": 3,
                         "momentum": 0.998, "final_momentum": 0.9999, "loss_beta": 2.0},
        "data2vec 2.0": {"name": "data2vec2", "modality": "vision", "mask_ratio": 0.8, "mask_block": 2,
                         "num_masks": 4, "top_k": 3, "momentum": 0.998, "final_momentum": 0.9999,
                         "decoder_dim": 64, "decoder_layers": 2, "decoder_groups": 8},
    }

    def __init__(self, preset: str = "nano") -> None:
        data = {"source": "parquet", "data_files": {"train": str(CIFAR)},
                "image": {"size": 32, "mean": MEAN.tolist(), "std": STD.tolist()}}
        model = {"preset": preset, "config": {"patch_size": 4}}
        self.methods = {m: {"task": t, "model": model, "data": data} for m, t in self.tasks.items()}

    def prepare(self, args: argparse.Namespace) -> None:
        if not CIFAR.is_file():
            raise SystemExit(f"needs the CIFAR-10 parquet at {CIFAR}")
        self.images, self.labels = load_images(args.limit)
        self.spans = self.splits.spans(len(self.labels))

    def batches(self, task: PretextTask, recipe: Recipe, args: argparse.Namespace) -> Iterator[dict]:
        generator = torch.Generator().manual_seed(args.seed)
        pool = self.images[self.spans["pretrain"].start: self.spans["pretrain"].stop]
        while True:
            yield train_batch(pool, args.batch_size, generator)

    def probe_splits(self, task: PretextTask) -> tuple[EvalSplit, EvalSplit, EvalSplit]:
        def split(span: range, size: int = 500) -> EvalSplit:
            return [({"pixel_values": self.images[i: min(i + size, span.stop)]},
                     self.labels[i: min(i + size, span.stop)]) for i in range(span.start, span.stop, size)]

        return split(self.spans["probe_train"]), split(self.spans["select"]), split(self.spans["val"])


class TaskDataModality(Modality):
    """Audio and text: the shipped recipes' task and model sections on one shared data section
    (the data2vec 2.0 recipe's, train file only); batches from the tasks' own data path."""

    data_file: Path
    recipes: dict[str, str]  # method -> shipped recipe name
    splits: Splits
    eval_batch_size = 64

    def __init__(self, preset: str = "nano") -> None:
        trees = {m: yaml.safe_load(shipped_recipes()[r].read_text()) for m, r in self.recipes.items()}
        data = trees["data2vec 2.0"]["data"]
        data["data_files"] = {"train": str(self.data_file)}  # the test file is never read
        self.methods = {m: {"task": t["task"], "model": {**t["model"], "preset": preset}, "data": data,
                            "train": {k: t["train"][k] for k in ("weight_decay", "betas")}}
                        for m, t in trees.items()}

    def prepare(self, args: argparse.Namespace) -> None:
        if not self.data_file.is_file():
            raise SystemExit(f"needs {self.data_file}")
        recipe = self.recipe(self.baseline, args)
        self.rows = shuffled_rows(len(load_data(recipe.data)), args.limit)
        self.spans = {k: [self.rows[i] for i in span] for k, span in self.splits.spans(len(self.rows)).items()}

    def batches(self, task: PretextTask, recipe: Recipe, args: argparse.Namespace) -> Iterator[dict]:
        """The training loop's batches (its loader, epoch after epoch), on the pretraining rows."""
        columns = task.required_columns + task.optional_columns
        data = load_data(recipe.data, required=task.required_columns, keep=columns).select(self.spans["pretrain"])
        loader = build_loader(task, task.prepare_dataset(data), recipe)
        epoch = 0
        while True:
            loader.sampler.set_epoch(epoch)
            loader.dataset.set_epoch(epoch)
            for batch in loader:
                batch.pop(BAD_KEY), batch.pop(BAD_ROWS_KEY)
                if batch:
                    yield batch
            epoch += 1

    def probe_splits(self, task: PretextTask) -> tuple[EvalSplit, EvalSplit, EvalSplit]:
        data = load_data(task.recipe.data, required=task.required_columns + ("label",))
        policy = task.recipe.data.on_bad_example

        def split(rows: list[int]) -> EvalSplit:
            loader = eval_loader(task, data.select(rows), "label", self.eval_batch_size, policy)
            return [(batch, labels) for batch, labels, _ in loader if batch is not None]

        return split(self.spans["probe_train"]), split(self.spans["select"]), split(self.spans["val"])


class AudioModality(TaskDataModality):
    name, baseline, unit, batch_size, num_classes = "audio", "wav2vec 2.0", "clips", 32, 10
    title = "Time to accuracy, Wav2Vec2 nano, FSDD spoken digits, 1 CPU thread"
    data_file = DATA / "fsdd" / "train.parquet"
    recipes = {"wav2vec 2.0": "wav2vec2_fsdd", "data2vec 2.0": "data2vec2_audio_fsdd"}
    splits = Splits(1500 / 2250, 1000 / 2250, 1750 / 2250)


class TextModality(TaskDataModality):
    name, baseline, unit, batch_size, num_classes = "text", "MLM", "blocks", 32, 4
    title = "Time to accuracy, BERT nano, AG News, 1 CPU thread"
    data_file = DATA / "agnews" / "train.parquet"
    recipes = {"MLM": "mlm_agnews", "data2vec 2.0": "data2vec2_text_agnews"}
    splits = Splits(0.85, 0.2, 0.9)

    def prepare(self, args: argparse.Namespace) -> None:
        """Train one tokenizer on the pretraining rows; both methods use its vocabulary."""
        super().prepare(args)
        data = self.recipe(self.baseline, args).data
        text, out = data.text, args.out / "tokenizer"
        texts = load_data(data, required=("text",)).select(self.spans["pretrain"])
        train_tokenizer(iter_texts(texts), out, vocab_size=text.vocab_size, model_type=text.tokenizer_model,
                        lowercase=text.lowercase, max_sentences=text.tokenizer_sample,
                        model_max_length=text.max_length)
        for tree in self.methods.values():
            tree["data"]["text"]["tokenizer"] = str(out.absolute())


MODALITIES: dict[str, type[Modality]] = {"image": ImageModality, "audio": AudioModality, "text": TextModality}


def load_images(limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All train images decoded once to normalised ``[N, 3, 32, 32]`` floats, and labels, in a
    fixed random order."""
    table = pq.read_table(CIFAR).to_pydict()
    order = shuffled_rows(len(table["label"]), limit)
    cells = [table["image"][i] for i in order]
    pixels = torch.stack([
        torch.frombuffer(bytearray(Image.open(io.BytesIO(c["bytes"])).convert("RGB").tobytes()),
                         dtype=torch.uint8).view(32, 32, 3)
        for c in cells
    ]).permute(0, 3, 1, 2).float() / 255
    return (pixels - MEAN[:, None, None]) / STD[:, None, None], torch.tensor([table["label"][i] for i in order])


def train_batch(images: torch.Tensor, batch_size: int, generator: torch.Generator) -> dict:
    """A random batch with random horizontal flips: the same views for every method."""
    idx = torch.randint(0, len(images), (batch_size,), generator=generator)
    x = images[idx]
    flip = torch.rand(batch_size, generator=generator) < 0.5
    return {"pixel_values": torch.where(flip[:, None, None, None], x.flip(-1), x)}


@torch.no_grad()
def features(task: PretextTask, split: EvalSplit) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen mean-pooled features and labels of one split."""
    task.eval()
    out = torch.cat([task.embed(batch, "mean").float() for batch, _ in split]), torch.cat([y for _, y in split])
    task.train()
    return out


def probe(task: PretextTask, splits: tuple[EvalSplit, ...], num_classes: int) -> dict[str, float]:
    """kNN and linear top-1 on the validation rows (linear hyper-parameters on the choice rows)."""
    train, select, val = (features(task, split) for split in splits)
    knn = knn_classify(*train, *val, num_classes=num_classes)["top1"]
    linear = linear_probe(train, select, val, num_classes, lrs=(1e-3, 1e-2, 1e-1), weight_decays=(0.0,), epochs=50)
    return {"knn": knn, "linear": linear.top1}


def lr_at(progress: float, base: float, warmup: float = 0.05) -> float:
    """Linear warmup then cosine, over the fraction of the time budget spent."""
    if progress < warmup:
        return base * progress / warmup
    return base * 0.5 * (1 + math.cos(math.pi * min((progress - warmup) / (1 - warmup), 1.0)))


def run_method(name: str, args: argparse.Namespace, modality: Modality) -> dict:
    torch.manual_seed(args.seed)
    recipe = modality.recipe(name, args)
    task = build_task(recipe).train()
    params = [p for p in task.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=recipe.train.weight_decay,
                                  betas=tuple(recipe.train.betas))
    splits = modality.probe_splits(task)
    batches = modality.batches(task, recipe, args)
    checkpoints = [args.seconds * 2.0 ** -k for k in range(args.points - 1, -1, -1)]
    curve = [{"seconds": 0.0, "step": 0, **probe(task, splits, modality.num_classes)}]
    print(json.dumps({"method": name, **curve[-1]}), flush=True)
    spent, step, total_steps, examples = 0.0, 0, None, 0
    while checkpoints:
        batch = next(batches)
        start = time.process_time()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(spent / args.seconds, args.lr)
        loss = task(batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        step += 1
        if total_steps is None and step == 10:  # EMA schedule over the steps the budget allows
            total_steps = max(int(args.seconds / (spent / 8)), 10) if spent else 10
        task.on_step_end(step, total_steps or 10 * step)
        if step > 1:  # step 1: one-off warm-up
            spent += time.process_time() - start
            examples += len(next(iter(batch.values())))
        if spent >= checkpoints[0]:
            checkpoints.pop(0)
            curve.append({"seconds": round(spent, 1), "step": step, "loss": round(loss.item(), 4),
                          **probe(task, splits, modality.num_classes)})
            print(json.dumps({"method": name, **curve[-1]}), flush=True)
    return {"method": name, "steps": step, "examples_per_s": round(examples / spent, 1) if spent else None,
            "curve": curve}


def time_to_reach(curve: list[dict], metric: str, target: float) -> float | None:
    """The first probed time at which ``metric`` is at least ``target``."""
    return next((p["seconds"] for p in curve if p["seconds"] > 0 and p[metric] >= target), None)


def speedups(results: list[dict], baseline: str) -> list[dict]:
    base = next(r for r in results if r["method"] == baseline)
    out = []
    for metric in ("knn", "linear"):
        target = base["curve"][-1][metric]
        base_time = time_to_reach(base["curve"], metric, target)
        for r in results:
            reached = time_to_reach(r["curve"], metric, target)
            out.append({"metric": metric, "method": r["method"], "baseline_final": target, "seconds": reached,
                        "speedup": round(base_time / reached, 2) if reached else None})
    return out


def markdown(results: list[dict], gains: list[dict], modality: Modality) -> str:
    lines = [f"| method | steps | {modality.unit}/s | " + " | ".join(f"kNN / linear @ {p['seconds']:.0f} s"
                                                                  for p in results[0]["curve"]) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in results[0]["curve"]) + " |"]
    for r in results:
        cells = [f"{100 * p['knn']:.1f} / {100 * p['linear']:.1f}" for p in r["curve"]]
        lines.append(f"| {r['method']} | {r['steps']} | {r['examples_per_s']} | " + " | ".join(cells) + " |")
    if not gains:
        return "\n".join(lines)
    base = modality.baseline
    lines += ["", f"| probe | method | time to {base}'s final accuracy | speed-up over {base} |",
              "| --- | --- | --- | --- |"]
    for g in gains:
        reached = f"{g['seconds']:.0f} s" if g["seconds"] else "not reached"
        speed = f"{g['speedup']}x" if g["speedup"] else "-"
        lines.append(f"| {g['metric']} ({100 * g['baseline_final']:.1f}%) | {g['method']} | {reached} | {speed} |")
    return "\n".join(lines)


def plot(results: list[dict], modality: Modality, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for ax, metric in zip(axes, ("knn", "linear")):
        for r in results:
            points = [p for p in r["curve"] if p["seconds"] > 0]
            ax.plot([p["seconds"] for p in points], [100 * p[metric] for p in points], "o-", label=r["method"])
        ax.set_xscale("log")
        ax.set_xticks([p["seconds"] for p in results[0]["curve"] if p["seconds"] > 0])
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.axhline(100 * results[0]["curve"][0][metric], color="grey", ls=":", label="random init")
        ax.set_xlabel("training time, s (one thread's CPU time; log)")
        ax.set_ylabel(f"{metric} top-1 on the validation rows (%)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(modality.title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modality", choices=list(MODALITIES), default="image")
    parser.add_argument("--seconds", type=float, default=300.0, help="training CPU-time budget per method")
    parser.add_argument("--points", type=int, default=6, help="probe points, log-spaced (halving)")
    parser.add_argument("--batch-size", type=int, help="default: 64 images, 32 clips or text blocks")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--preset", default="nano")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", help="default: all of the modality's")
    parser.add_argument("--limit", type=int, help="use only this many (shuffled) train rows (smoke tests)")
    parser.add_argument("--out", type=Path, help="default: bench/out/time_to_accuracy[_<modality>]")
    parser.add_argument("--render", type=Path, metavar="DIR",
                        help="no training: the table and plot from DIR/results.json (of the same --modality)")
    args = parser.parse_args(argv)
    modality = MODALITIES[args.modality](args.preset)
    unknown = sorted(set(args.methods or ()) - set(modality.methods))
    if unknown:
        parser.error(f"--methods: {unknown} are not {args.modality} methods; pick from {list(modality.methods)}")
    args.methods = args.methods or list(modality.methods)
    args.batch_size = args.batch_size or modality.batch_size
    suffix = "" if args.modality == "image" else f"_{args.modality}"
    args.out = args.out or args.render or Path(f"bench/out/time_to_accuracy{suffix}")
    args.png = args.out / f"time_to_accuracy{suffix}.png"
    args.bench = modality
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    modality: Modality = args.bench
    args.out.mkdir(parents=True, exist_ok=True)
    if args.render:
        saved = json.loads((args.render / "results.json").read_text())
        results, settings = saved["results"], saved["args"]
        header = f"rendered from {args.render / 'results.json'}"
    else:
        modality.prepare(args)
        results = [run_method(name, args, modality) for name in args.methods]
        settings = {k: str(v) for k, v in vars(args).items() if k != "bench"}
        header = (f"machine: {platform.machine()}, {os.cpu_count()} cores, torch threads "
                  f"{torch.get_num_threads()}, load avg {os.getloadavg()[0]:.1f}; torch {torch.__version__}, "
                  f"transformers {transformers.__version__}")
    methods = [r["method"] for r in results]
    gains = speedups(results, modality.baseline) if modality.baseline in methods else []
    table = markdown(results, gains, modality)
    (args.out / "results.json").write_text(json.dumps({"args": settings, "results": results, "speedups": gains},
                                                      indent=2))
    (args.out / "table.md").write_text(header + "\n\n" + table + "\n")
    plot(results, modality, args.png)
    print(header)
    print(table)


if __name__ == "__main__":
    main()
