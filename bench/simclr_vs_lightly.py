"""SimCLR on CIFAR-10: mmssl's recipe against the `lightly` package's SimCLR, in one run.

Both sides train the same transformers ``ViTModel`` (built from ``recipes/simclr_cifar10.yaml``:
preset nano, patch 4, CLS pooling) with the same projection sizes, temperature, views, batch,
steps, seed and optimizer (AdamW, warmup + cosine, clipping). mmssl runs
``pretrain(load_recipe(...))``; lightly runs the plain PyTorch loop of its own examples with
``SimCLRTransform``, ``SimCLRProjectionHead`` and ``NTXentLoss``. Then the two trained encoders
and the common random init are scored with mmssl.eval's kNN and linear probe on the same
features of a seeded CIFAR-10 subset. Images/s is timed from step ``--warmup`` to the end.

``--recipe recipes/simclr_resnet_cifar10.yaml`` puts its transformers ``ResNetModel`` on both
sides instead (pooled as mmssl pools it); a probe on the raw pixels of the same subset is scored
in the same run as the floor both encoders must clear.

Run from the repository root (the recipe reads ../shared/data); needs ``pip install -e .[bench]``:

    python bench/simclr_vs_lightly.py --steps 300 --batch-size 64 --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import transformers
from torch import nn
from transformers import PreTrainedModel

from mmssl.augment.vision import ViewConfig, view_transform
from mmssl.backbones.base import Backbone, get_backbone
from mmssl.data.sources import load_data
from mmssl.eval.features import Features, extract_features
from mmssl.eval.knn import knn_classify
from mmssl.eval.linear import linear_probe
from mmssl.eval.raw import raw_input_features
from mmssl.eval.runner import random_init_task
from mmssl.eval.subsets import train_val_split
from mmssl.losses.nt_xent import nt_xent_loss
from mmssl.recipe import EvalConfig, Recipe, load_recipe
from mmssl.tasks.base import build_task
from mmssl.train.loop import pretrain
from mmssl.weights import find_checkpoint, model_weights

try:
    import lightly
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.models.utils import get_weight_decay_parameters
    from lightly.transforms import SimCLRTransform
    from lightly.utils.scheduler import CosineWarmupScheduler
except ImportError as err:
    raise SystemExit(
        f"bench/simclr_vs_lightly.py needs the lightly package ({err}); "
        'install the benchmark extra: pip install -e ".[bench]"'
    ) from err

RECIPE = Path("recipes/simclr_cifar10.yaml")


def simclr_view(recipe: Recipe) -> ViewConfig:
    """The view both SimCLR branches get, from the recipe's fields as ``task: simclr`` reads them."""
    task, image = recipe.task, recipe.data.image
    return ViewConfig(image.size, tuple(task.crop_scale), image.horizontal_flip, task.color_jitter,
                      blur_prob=task.blur_prob)


def lightly_transform_kwargs(view: ViewConfig, channels: int, mean: list[float],
                             std: list[float]) -> dict[str, Any]:
    """``SimCLRTransform`` arguments that reproduce ``mmssl.augment.vision.view_transform``.

    mmssl's jitter of strength ``s`` is ColorJitter(0.8s, 0.8s, 0.8s, 0.2s) with probability
    ``jitter_prob``, followed by grayscale; both are left out for one channel or ``s = 0``.
    """
    low, high = view.scale
    if high != 1.0:
        raise ValueError(f"crop scale {view.scale}: lightly's SimCLRTransform always crops up to 1.0")
    color = channels == 3 and view.jitter > 0
    return {
        "input_size": view.size,
        "min_scale": low,
        "hf_prob": 0.5 if view.flip else 0.0,
        "vf_prob": 0.0,
        "rr_prob": 0.0,
        "cj_prob": view.jitter_prob if color else 0.0,
        "cj_strength": view.jitter,
        "cj_bright": 0.8,
        "cj_contrast": 0.8,
        "cj_sat": 0.8,
        "cj_hue": 0.2,
        "random_gray_scale": view.grayscale_prob if color else 0.0,
        "gaussian_blur": view.blur_prob,
        "sigmas": (0.1, 2.0),
        "normalize": {"mean": list(mean[:channels]), "std": list(std[:channels])},
    }


def bench_overrides(args: argparse.Namespace, out: str) -> list[str]:
    """Recipe overrides shared by both sides: budget, batch, workers, fp32, one log window per
    ``warmup`` steps (so the timed window starts where the lightly side's does)."""
    return [f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size}",
            f"train.warmup_steps={args.lr_warmup}", f"train.log_every={args.warmup}",
            f"train.save_every={args.steps}", "train.progress=false", 'train.precision="no"',
            f"data.num_workers={args.workers}", f"seed={args.seed}", f"output_dir={out}", *args.set]


class SimCLR(nn.Module):
    """lightly's SimCLR model from its examples, with mmssl's backbone and pooling."""

    def __init__(self, backbone: PreTrainedModel, kind: Backbone, pooling: str, hidden_dim: int,
                 out_dim: int) -> None:
        super().__init__()
        self.backbone, self.kind, self.pooling = backbone, kind, pooling
        self.projection_head = SimCLRProjectionHead(kind.hidden_size(backbone), hidden_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.kind.pooled(self.backbone, {"pixel_values": x}, self.pooling)
        return self.projection_head(features)


class ParquetImages(torch.utils.data.Dataset):
    """``(transform(image), label)`` from a parquet split, as a torchvision dataset returns."""

    def __init__(self, path: str, transform: Any) -> None:
        self.data = datasets.load_dataset("parquet", data_files={"train": path}, split="train")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        row = self.data[index]
        return self.transform(row["image"].convert("RGB")), row["label"]


def backbone_kind(recipe: Recipe) -> Backbone:
    return get_backbone(recipe.model.backbone, recipe.task.modality)


def new_backbone(recipe: Recipe) -> PreTrainedModel:
    """The encoder ``task: simclr`` builds, drawn from the seed as mmssl draws it."""
    return backbone_kind(recipe).build(recipe.model, recipe.data)


def mmssl_images_per_s(run_dir: Path, warmup: int, batch_size: int) -> float:
    """Images over seconds of the logged windows after step ``warmup``."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    timed = [row for row in rows if row["step"] > warmup]
    steps = np.diff([warmup] + [row["step"] for row in timed])
    images = steps * batch_size
    return float(images.sum() / sum(n / row["samples_per_s"] for n, row in zip(images, timed)))


def run_mmssl(recipe: Recipe, args: argparse.Namespace) -> dict[str, Any]:
    cpu, wall = time.process_time(), time.perf_counter()
    pretrain(recipe)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    rows = [json.loads(line) for line in (recipe.run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"images_per_s": mmssl_images_per_s(recipe.run_dir, args.warmup, args.batch_size),
            "wall_s": wall, "cpu_s": cpu, "first_loss": rows[0]["loss"], "last_loss": rows[-1]["loss"]}


def run_lightly(recipe: Recipe, args: argparse.Namespace) -> tuple[dict[str, Any], PreTrainedModel]:
    """lightly's examples/pytorch/simclr.py loop with the recipe's settings."""
    cpu, wall = time.process_time(), time.perf_counter()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    task, train = recipe.task, recipe.train
    model = SimCLR(new_backbone(recipe), backbone_kind(recipe), task.pooling,
                   task.projection_hidden_dim, task.projection_dim).to(device)
    image = recipe.data.image
    transform = SimCLRTransform(**lightly_transform_kwargs(simclr_view(recipe), image.channels,
                                                           image.mean, image.std))
    dataset = ParquetImages(recipe.data.data_files["train"], transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=train.batch_size, shuffle=True,
                                         drop_last=True, num_workers=recipe.data.num_workers,
                                         generator=torch.Generator().manual_seed(args.seed))
    criterion = NTXentLoss(temperature=task.temperature)
    decay, no_decay = get_weight_decay_parameters([model])
    # mmssl also keeps a ViT's CLS token and position table out of weight decay
    embeddings = getattr(model.backbone, "embeddings", None)
    tokens = {id(getattr(embeddings, name)) for name in ("cls_token", "position_embeddings")
              if hasattr(embeddings, name)}
    no_decay += [p for p in decay if id(p) in tokens]
    decay = [p for p in decay if id(p) not in tokens]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": train.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=train.lr, betas=tuple(train.betas),
    )
    scheduler = CosineWarmupScheduler(optimizer, warmup_epochs=train.warmup_steps,
                                      max_epochs=train.max_steps, end_value=0.0)
    losses, step, start = [], 0, 0.0
    model.train()
    while step < train.max_steps:
        for batch in loader:
            x0, x1 = batch[0]
            z0 = model(x0.to(device))
            z1 = model(x1.to(device))
            loss = criterion(z0, z1)
            loss.backward()
            if train.max_grad_norm:
                nn.utils.clip_grad_norm_(model.parameters(), train.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
            scheduler.step()
            losses.append(loss.detach())
            step += 1
            if step == args.warmup:
                start = time.perf_counter()
            if step % 50 == 0:
                recent = torch.stack(losses[-50:]).mean().item()
                print(f"lightly step {step}/{train.max_steps} loss {recent:.4f}", flush=True)
            if step == train.max_steps:
                break
    timed = time.perf_counter() - start
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    losses = torch.stack(losses).cpu()
    last_window = (len(losses) - 1) % args.warmup + 1  # the steps of mmssl's last log line
    result = {"images_per_s": (train.max_steps - args.warmup) * train.batch_size / timed,
              "wall_s": wall, "cpu_s": cpu, "first_loss": losses[: args.warmup].mean().item(),
              "last_loss": losses[-last_window:].mean().item()}
    return result, model.backbone.cpu()


def check_same_loss(temperature: float) -> float:
    """|mmssl NT-Xent - lightly NTXentLoss| on random projections (should be ~1e-7)."""
    z0, z1 = torch.randn(2, 16, 8, generator=torch.Generator().manual_seed(0))
    ours = nt_xent_loss(z0, z1, temperature, gather=False)
    theirs = NTXentLoss(temperature=temperature)(z0, z1)
    return abs(ours.item() - theirs.item())


def eval_splits(recipe: Recipe, args: argparse.Namespace, required: tuple[str, ...]) -> dict[str, Any]:
    """Seeded train/test subsets of the recipe's data and the probe's stratified validation rows."""
    splits = {}
    for split, limit in (("train", args.max_train), ("test", args.max_test)):
        cfg = dataclasses.replace(recipe.data, split=split, max_examples=None)
        ds = load_data(cfg, required=required + ("label",))
        splits[split] = ds.shuffle(seed=args.seed).select(range(min(limit, len(ds))))
    fit, val = train_val_split(np.asarray(splits["train"]["label"]), EvalConfig().val_fraction, args.seed)
    return {**splits, "fit": fit, "val": val}


def score(task: Any, data: dict[str, Any], pooling: str, seed: int) -> dict[str, float]:
    """Weighted kNN and linear probe (mmssl.eval, its default settings) on one encoder."""
    batch_size = EvalConfig().batch_size
    train = extract_features(task, data["train"], "label", pooling, batch_size)
    test = extract_features(task, data["test"], "label", pooling, batch_size)
    return score_features(train, test, data, seed)


def score_pixels(recipe: Recipe, data: dict[str, Any], seed: int) -> dict[str, float]:
    """The same probes on the raw pixels (``mmssl.eval.raw``): the floor an encoder must clear."""
    train, test = raw_input_features("vision", "image", recipe.data, data["train"], data["test"], "label")
    return score_features(train, test, data, seed)


def score_features(train: Features, test: Features, data: dict[str, Any], seed: int) -> dict[str, float]:
    cfg = EvalConfig()
    x, y = train.rows(data["fit"])
    knn = knn_classify(x, y, test.x, test.y, 10, cfg.knn_k, cfg.knn_temperature)
    probe = linear_probe((x, y), train.rows(data["val"]), (test.x, test.y), 10, cfg.linear_lrs,
                         cfg.linear_weight_decays, cfg.linear_epochs, seed)
    return {"knn_top1": knn["top1"], "linear_top1": probe.top1}


def load_average() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=RECIPE, help="a task: simclr image recipe")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a further recipe override for both sides, e.g. task.temperature=0.5")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20, help="steps left out of the timing")
    parser.add_argument("--lr-warmup", type=int, default=30, help="learning-rate warmup steps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-train", type=int, default=2000)
    parser.add_argument("--max-test", type=int, default=1000)
    parser.add_argument("--first", choices=["mmssl", "lightly"], default="mmssl")
    parser.add_argument("--out", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    if args.steps <= args.warmup:
        parser.error(f"--steps ({args.steps}) must exceed --warmup ({args.warmup})")
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        recipe = load_recipe(args.recipe, bench_overrides(args, tmp))
        image = recipe.data.image
        kwargs = lightly_transform_kwargs(simclr_view(recipe), image.channels, image.mean, image.std)
        print(f"machine: {platform.machine()} {platform.processor() or 'cpu'}, {os.cpu_count()} cores, "
              f"{torch.get_num_threads()} torch threads, "
              f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}")
        print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
              f"lightly {lightly.__version__}")
        print(f"mmssl view:      {view_transform(image, simclr_view(recipe))}")
        print(f"SimCLRTransform: {json.dumps(kwargs)}")
        print(f"|NT-Xent mmssl - lightly| on random projections: {check_same_loss(recipe.task.temperature):.2e}")
        torch.manual_seed(args.seed)
        same_init = all(torch.equal(a, b) for a, b in zip(
            new_backbone(recipe).state_dict().values(),
            random_init_task(recipe).encoder.state_dict().values()))
        print(f"same initial backbone weights on both sides: {same_init}")

        data = eval_splits(recipe, args, tuple(build_task(recipe).required_columns))
        results: dict[str, Any] = {}
        order = ["mmssl", "lightly"] if args.first == "mmssl" else ["lightly", "mmssl"]
        for side in order:
            print(f"[{side}] start: {load_average()}", flush=True)
            if side == "mmssl":
                results[side] = run_mmssl(recipe, args)
            else:
                results[side], lightly_backbone = run_lightly(recipe, args)
            print(f"[{side}] {json.dumps({k: round(v, 4) for k, v in results[side].items()})}", flush=True)
        print(f"after training: {load_average()}", flush=True)

        trained = build_task(recipe)
        trained.load_state_dict(model_weights(find_checkpoint(recipe.run_dir)))
        peer = build_task(recipe)
        peer.encoder.load_state_dict(lightly_backbone.state_dict())
        models = {"mmssl": trained.eval(), "lightly": peer.eval(), "random_init": random_init_task(recipe)}
        # a ConvNet pools cls and mean alike (the global average): score it once
        poolings = ("cls", "mean") if backbone_kind(recipe).name == "vit" else (recipe.task.pooling,)
        for pooling in poolings:
            for name, task in models.items():
                scores = score(task, data, pooling, args.seed)
                results.setdefault(name, {})[pooling] = scores
                print(f"[{name}] {pooling} pooling: {json.dumps(scores)}", flush=True)
        results["pixels"] = score_pixels(recipe, data, args.seed)
        print(f"[pixels] {json.dumps(results['pixels'])}", flush=True)
    print(f"end: {load_average()}")
    print(f"steps {args.steps} x batch {args.batch_size}, timed after step {args.warmup}, "
          f"{args.workers} workers; eval on {len(data['fit'])} train / {len(data['val'])} val / "
          f"{len(data['test'])} test")
    print(f"recipe {args.recipe}")
    print("| | mmssl | lightly | random init | pixels |")
    print("| --- | --- | --- | --- | --- |")
    for key in ("images_per_s", "cpu_s", "wall_s", "first_loss", "last_loss"):
        print(f"| {key} | {results['mmssl'][key]:.2f} | {results['lightly'][key]:.2f} | | |")
    for pooling in poolings:
        for metric in ("knn_top1", "linear_top1"):
            cells = " | ".join(f"{results[m][pooling][metric]:.3f}" for m in models)
            print(f"| {metric} ({pooling}) | {cells} | {results['pixels'][metric]:.3f} |")
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out), "recipe": str(args.recipe)}, **results}, indent=2))


if __name__ == "__main__":
    main()
