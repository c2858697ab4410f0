"""One GPU benchmark for the five workloads, each beside transformers' ``Trainer``, in one run.

For MAE ViT-B/16, BERT-base MLM, ModernBERT-base MLM (when the installed transformers has
it), wav2vec 2.0 base and SimCLR ResNet-50 it measures samples/s, model FLOPs utilisation
(FLOPs of one training step counted by ``torch.utils.flop_counter`` over the bf16 dense peak
of the GPU), the fraction of step time the host spent waiting for the DataLoader, and peak
GPU memory, with bf16 autocast, fused AdamW, ``torch.compile`` and DataLoader workers. Two
runners train the same freshly built model on the same synthetic examples (made in the
workers, so the data cost is real: random images, token ids with MLM masking, waveforms
with wav2vec 2.0 span masks and negatives, SimCLR's two augmented views). SimCLR runs a
second time with its views made on the GPU (``data.image.augment_on: device``): the workers
only draw and resize a ``uint8`` image, ``mmssl.augment.batched`` makes both views per image
in the model's forward; its row beside the first shows what moving augmentation costs or saves:

- ``mmssl loop``: what ``mmssl/train/loop.py`` does per step (autocast, fused AdamW, clipping,
  pinned memory, non-blocking copies, optional compile), without ``datasets``;
- ``Trainer``: transformers' ``Trainer`` with the same settings (``bf16``,
  ``adamw_torch_fused``, ``torch_compile``, ``dataloader_num_workers``). lightly is the
  SimCLR peer in ``bench/simclr_vs_lightly.py``; it is used here only when importable.

It writes one Markdown table. Nothing here needs ``datasets`` or an mmssl install (mmssl's
augmentation modules are imported from this checkout), so it runs on the device machine as
it is (see ``bench/gpu.sh``). On CPU, ``--smoke`` runs tiny models for a few steps
(the test suite does this). Full run on an H100/H200: ``bash bench/gpu.sh`` (about 6 min).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import transformers
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import resnet50
from torchvision.transforms import v2
from transformers import (
    Trainer,
    TrainerCallback,
    TrainingArguments,
    ViTMAEConfig,
    ViTMAEForPreTraining,
    Wav2Vec2Config,
    Wav2Vec2ForPreTraining,
)
from transformers.models.wav2vec2.modeling_wav2vec2 import (
    _compute_mask_indices,
    _sample_negative_indices,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # mmssl from this checkout, not installed
from mmssl.augment.batched import BatchedViews  # noqa: E402
from mmssl.augment.vision import ViewConfig  # noqa: E402
from mmssl.recipe import ImageConfig  # noqa: E402

#: bf16 dense peak of a GPU, FLOP/s (vendor data sheets, SXM parts), by a name fragment.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12}


@dataclass
class Workload:
    """A model factory, a per-example generator and a collator; the model returns its loss."""

    name: str
    unit: str
    batch_size: int
    make_model: Callable[[], nn.Module]
    make_example: Callable[[int], dict[str, torch.Tensor]]
    collate: Callable[[list[dict]], dict[str, torch.Tensor]] = torch.utils.data.default_collate
    notes: list[str] = field(default_factory=list)


class Synthetic(Dataset):
    """``length`` examples made on demand from their index (in the DataLoader workers)."""

    def __init__(self, make: Callable[[int], dict], length: int) -> None:
        self.make, self.length = make, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return self.make(index)


class LossOnly(nn.Module):
    """Wraps a transformers pretraining model so that ``forward(**batch)`` returns ``{"loss"}``
    (what both runners need) whatever the model's own output type."""

    def __init__(self, model: nn.Module, loss: Callable[[Any], torch.Tensor] | None = None) -> None:
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, **batch: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(**batch)
        return {"loss": self.loss(out) if self.loss else out.loss}


# ----------------------------------------------------------------------------- workloads


def mae(smoke: bool) -> Workload:
    size = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                decoder_hidden_size=32, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                decoder_intermediate_size=64, image_size=32, patch_size=8) if smoke else {}
    config = ViTMAEConfig(mask_ratio=0.75, norm_pix_loss=True, **size)  # defaults: ViT-B/16, 224

    def example(i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return {"pixel_values": torch.randn(3, config.image_size, config.image_size, generator=g)}

    return Workload("MAE ViT-B/16" if not smoke else "MAE (smoke)", "images", 4 if smoke else 256,
                    lambda: LossOnly(ViTMAEForPreTraining(config)), example)


def mlm_collate(vocab: int, mask_id: int) -> Callable[[list[dict]], dict]:
    """BERT masking of 15% of the tokens (80% mask id, 10% random, 10% kept), as
    ``DataCollatorForLanguageModeling`` does, in the workers."""

    def collate(examples: list[dict]) -> dict:
        ids = torch.stack([ex["input_ids"] for ex in examples])
        labels = ids.clone()
        chosen = torch.rand(ids.shape) < 0.15
        labels[~chosen] = -100
        roll = torch.rand(ids.shape)
        ids = torch.where(chosen & (roll < 0.8), torch.full_like(ids, mask_id), ids)
        ids = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), torch.randint_like(ids, vocab), ids)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

    return collate


def text_workload(name: str, smoke: bool) -> Workload | None:
    if name == "ModernBERT-base":
        if not hasattr(transformers, "ModernBertForMaskedLM"):
            return None
        config_cls, model_cls = transformers.ModernBertConfig, transformers.ModernBertForMaskedLM
        small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     vocab_size=512, global_attn_every_n_layers=2, local_attention=16, pad_token_id=0,
                     bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2)
    else:
        config_cls, model_cls = transformers.BertConfig, transformers.BertForMaskedLM
        small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     vocab_size=512)
    config = config_cls(**small) if smoke else config_cls()  # defaults: the base models
    config._attn_implementation = "sdpa"
    length = 32 if smoke else 512
    vocab = config.vocab_size

    def example(i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return {"input_ids": torch.randint(5, vocab, (length,), generator=g)}

    return Workload(f"{name} MLM" if not smoke else f"{name} (smoke)", "sequences", 4 if smoke else 64,
                    lambda: LossOnly(model_cls(config)), example, mlm_collate(vocab, mask_id=4),
                    [f"{length} tokens per sequence"])


def wav2vec2(smoke: bool) -> Workload:
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 conv_dim=(32, 32), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=16,
                 num_conv_pos_embedding_groups=2, codevector_dim=32, proj_codevector_dim=32,
                 num_codevectors_per_group=16) if smoke else {}
    config = Wav2Vec2Config(mask_time_prob=0.65, mask_time_length=10, num_negatives=100, **small)
    seconds = 0.5 if smoke else 10.0
    samples = int(16000 * seconds)
    frames = samples
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        frames = (frames - kernel) // stride + 1

    def example(i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return {"input_values": torch.randn(samples, generator=g)}

    def collate(examples: list[dict]) -> dict:
        values = torch.stack([ex["input_values"] for ex in examples])
        mask = _compute_mask_indices((len(examples), frames), 0.65, 10, min_masks=2)
        negatives = _sample_negative_indices((len(examples), frames), config.num_negatives, mask)
        return {"input_values": values, "mask_time_indices": torch.from_numpy(mask),
                "sampled_negative_indices": torch.from_numpy(negatives)}

    return Workload("wav2vec 2.0 base" if not smoke else "wav2vec 2.0 (smoke)", "clips", 4 if smoke else 32,
                    lambda: LossOnly(Wav2Vec2ForPreTraining(config)), example, collate,
                    [f"{seconds:g} s clips"])


class SimCLR(nn.Module):
    """ResNet-50 (torchvision), SimCLR's 2-layer projection head, NT-Xent at temperature 0.1,
    both views through the backbone in one batch."""

    def __init__(self, width: int = 2048, dim: int = 128) -> None:
        super().__init__()
        self.backbone = resnet50()
        self.backbone.fc = nn.Identity()
        self.head = nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, dim))

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> dict[str, torch.Tensor]:
        z = F.normalize(self.head(self.backbone(torch.cat([view1, view2]))), dim=1).float()
        n = view1.shape[0]
        logits = (z @ z.T / 0.1).fill_diagonal_(float("-inf"))
        targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
        return {"loss": F.cross_entropy(logits, targets)}


def simclr(smoke: bool) -> Workload:
    size = 32 if smoke else 224
    views = v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip(),
                        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), v2.RandomGrayscale(0.2),
                        v2.ToDtype(torch.float32, scale=True)])

    def example(i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        image = torch.randint(0, 256, (3, size + size // 7, size + size // 7), dtype=torch.uint8, generator=g)
        return {"view1": views(image), "view2": views(image)}

    return Workload("SimCLR ResNet-50" if not smoke else "SimCLR ResNet-50 (smoke)", "images",
                    4 if smoke else 256, SimCLR, example, notes=[f"2 views of {size}px"])


class SimCLROnDevice(SimCLR):
    """The same model fed the way ``data.image.augment_on: device`` feeds mmssl's SimCLR: a
    batch of ``uint8`` images, whose two views (the same crop, flip, jitter and grey
    probabilities, per image) are made on the GPU by ``mmssl.augment.batched``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.image = ImageConfig(size=size, mean=[0.0] * 3, std=[1.0] * 3)
        self.view = ViewConfig(size, (0.08, 1.0), jitter=0.5, blur_prob=0.0)  # jitter 0.4/0.4/0.4/0.1

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        views = BatchedViews(self.image, [self.view] * 2).finish([images])
        return super().forward(*views)


def simclr_device(smoke: bool) -> Workload:
    size = 32 if smoke else 224
    resize = v2.Resize(size, antialias=True)  # what the workers still do: decode (here: draw) and resize

    def example(i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        image = torch.randint(0, 256, (3, size + size // 7, size + size // 7), dtype=torch.uint8, generator=g)
        return {"images": resize(image)}

    name = "SimCLR ResNet-50, views on device"
    return Workload(name if not smoke else f"{name} (smoke)", "images", 4 if smoke else 256,
                    lambda: SimCLROnDevice(size), example, notes=[f"2 views of {size}px made on the device"])


def workloads(smoke: bool) -> list[tuple[str, Workload | None]]:
    return [("mae", mae(smoke)), ("bert", text_workload("BERT-base", smoke)),
            ("modernbert", text_workload("ModernBERT-base", smoke)), ("wav2vec2", wav2vec2(smoke)),
            ("simclr", simclr(smoke)), ("simclr_device", simclr_device(smoke))]


# ----------------------------------------------------------------------------- runners


@dataclass
class Settings:
    device: torch.device
    steps: int
    warmup: int
    workers: int
    compile: bool

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def step_flops(model: nn.Module, batch: dict, settings: Settings) -> float:
    """FLOPs of one forward and backward pass on ``batch`` (matmuls, convolutions, attention)."""
    counter = FlopCounterMode(display=False)
    with counter, autocast(settings):
        model(**batch)["loss"].backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def autocast(settings: Settings) -> contextlib.AbstractContextManager:
    return torch.autocast("cuda", dtype=torch.bfloat16) if settings.cuda else contextlib.nullcontext()


def loader(work: Workload, settings: Settings) -> DataLoader:
    length = work.batch_size * (settings.steps + 2)
    return DataLoader(Synthetic(work.make_example, length), batch_size=work.batch_size, shuffle=False,
                      num_workers=settings.workers, collate_fn=work.collate, pin_memory=settings.cuda,
                      persistent_workers=False, prefetch_factor=4 if settings.workers else None, drop_last=True)


def reset_memory(settings: Settings) -> None:
    if settings.cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib(settings: Settings) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if settings.cuda else None


def sync(settings: Settings) -> None:
    if settings.cuda:
        torch.cuda.synchronize()


def run_loop(work: Workload, settings: Settings) -> dict[str, Any]:
    """mmssl's per-step work: autocast, fused AdamW, clipping, pinned non-blocking copies."""
    model = work.make_model().to(settings.device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=settings.cuda)
    step_fn = model
    if settings.compile:
        step_fn = torch.compile(model)
    reset_memory(settings)
    waited, start, done, flops = 0.0, 0.0, 0, 0.0
    batches = iter(loader(work, settings))
    for step in range(settings.steps):
        if step == settings.warmup:
            sync(settings)
            start, waited = time.perf_counter(), 0.0
        before = time.perf_counter()
        batch = {k: v.to(settings.device, non_blocking=True) for k, v in next(batches).items()}
        waited += time.perf_counter() - before
        if step == 0:
            flops = step_flops(model, batch, settings) / work.batch_size
        with autocast(settings):
            loss = step_fn(**batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done += step >= settings.warmup
    sync(settings)
    seconds = time.perf_counter() - start
    if not math.isfinite(loss.item()):
        raise FloatingPointError(f"{work.name}: loss is {loss.item()}")
    return {"samples_per_s": done * work.batch_size / seconds, "wait": waited / seconds,
            "memory": peak_memory_gib(settings), "flops": flops}


class StepClock(TrainerCallback):
    """Wall time from the end of step ``warmup`` to the end of training."""

    def __init__(self, warmup: int, settings: Settings) -> None:
        self.warmup, self.settings, self.start, self.end = warmup, settings, 0.0, 0.0

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            sync(self.settings)
            self.start = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        sync(self.settings)
        self.end = time.perf_counter()


def run_trainer(work: Workload, settings: Settings, out: Path) -> dict[str, Any]:
    model = work.make_model()
    args = TrainingArguments(
        output_dir=str(out), max_steps=settings.steps, per_device_train_batch_size=work.batch_size,
        learning_rate=1e-4, max_grad_norm=1.0, bf16=settings.cuda, use_cpu=not settings.cuda,
        optim="adamw_torch_fused" if settings.cuda else "adamw_torch", torch_compile=settings.compile,
        dataloader_num_workers=settings.workers, dataloader_pin_memory=settings.cuda,
        dataloader_prefetch_factor=4 if settings.workers else None, logging_steps=10_000, save_strategy="no",
        report_to=[], remove_unused_columns=False, disable_tqdm=True, seed=0,
    )
    clock = StepClock(settings.warmup, settings)
    reset_memory(settings)
    trainer = Trainer(model=model, args=args, train_dataset=Synthetic(work.make_example, work.batch_size * (settings.steps + 2)),
                      data_collator=work.collate, callbacks=[clock])
    trainer.train()
    timed = settings.steps - settings.warmup
    return {"samples_per_s": timed * work.batch_size / (clock.end - clock.start), "memory": peak_memory_gib(settings)}


# ----------------------------------------------------------------------------- report


def peak_flops(settings: Settings) -> float | None:
    if not settings.cuda:
        return None
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in PEAK_BF16.items() if key in name), None)


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def table(rows: list[dict], settings: Settings) -> str:
    peak = peak_flops(settings)
    lines = ["| workload | runner | samples/s | vs Trainer | MFU | data wait | peak memory GiB | notes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['workload']} | {row['runner']} | - | - | - | - | - | {row['error']} |")
            continue
        rate, flops = row["samples_per_s"], row.get("flops")
        mfu = rate * flops / peak if peak and flops else None
        ratio = row.get("vs_trainer")
        lines.append(
            f"| {row['workload']} | {row['runner']} | {rate:.1f} {row['unit']} | {fmt(ratio, '.2f')} | "
            f"{fmt(None if mfu is None else 100 * mfu, '.1f')}{'%' if mfu is not None else ''} | "
            f"{fmt(None if row.get('wait') is None else 100 * row['wait'], '.1f')}{'%' if row.get('wait') is not None else ''} | "
            f"{fmt(row.get('memory'), '.1f')} | {row.get('notes', '')} |")
    return "\n".join(lines)


def header(settings: Settings) -> str:
    device = torch.cuda.get_device_name() if settings.cuda else f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    return (f"device: {device}; torch {torch.__version__}, transformers {transformers.__version__}; "
            f"{'bf16 autocast, fused AdamW' if settings.cuda else 'fp32, AdamW'}, compile={settings.compile}, "
            f"{settings.workers} DataLoader workers, {settings.steps} steps timed after {settings.warmup}")


def run_all(selected: list[tuple[str, Workload | None]], settings: Settings, out: Path, budget_s: float) -> list[dict]:
    """Both runners on each workload, in order; a failure is a row, not the end of the run."""
    rows: list[dict] = []
    started = time.perf_counter()
    for key, work in selected:
        if work is None:
            rows.append({"workload": key, "runner": "-", "error": "skipped: this transformers has no such model"})
            continue
        for runner in ("mmssl loop", "Trainer"):
            if time.perf_counter() - started > budget_s:
                rows.append({"workload": work.name, "runner": runner, "error": f"skipped: over the {budget_s:.0f} s budget"})
                continue
            try:
                result = run_loop(work, settings) if runner == "mmssl loop" else run_trainer(work, settings, out / "trainer")
            except Exception as err:  # one failing workload must not lose the others' numbers
                traceback.print_exc()
                rows.append({"workload": work.name, "runner": runner, "error": f"failed: {type(err).__name__}: {err}"[:200]})
                continue
            rows.append({"workload": work.name, "runner": runner, "unit": work.unit,
                         "notes": ", ".join(work.notes + [f"batch {work.batch_size}"]), **result})
            print(rows[-1], flush=True)
        ours = next((r for r in rows if r["workload"] == work.name and r["runner"] == "mmssl loop" and "error" not in r), None)
        peer = next((r for r in rows if r["workload"] == work.name and r["runner"] == "Trainer" and "error" not in r), None)
        if ours and peer:
            ours["vs_trainer"] = ours["samples_per_s"] / peer["samples_per_s"]
            peer["flops"] = ours["flops"]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models, a few steps (runs on CPU)")
    parser.add_argument("--workloads", nargs="+",
                        default=["mae", "bert", "modernbert", "wav2vec2", "simclr", "simclr_device"])
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default 30; smoke 3)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default 10; smoke 1)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default 8; smoke 0)")
    parser.add_argument("--no-compile", action="store_true", help="turn torch.compile off")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds; later runs are skipped past it")
    parser.add_argument("--out", type=Path, default=Path("bench/out/gpu.md"))
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.smoke
    settings = Settings(torch.device("cuda" if cuda else "cpu"),
                        steps=args.steps or (3 if args.smoke else 30), warmup=args.warmup or (1 if args.smoke else 10),
                        workers=args.workers if args.workers is not None else (0 if args.smoke else 8),
                        compile=not args.no_compile and not args.smoke)
    if settings.warmup >= settings.steps:
        parser.error("--warmup must be below --steps")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    selected = [(key, work) for key, work in workloads(args.smoke) if key in args.workloads]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = run_all(selected, settings, args.out.parent, args.budget)
    text = header(settings) + "\n\n" + table(rows, settings) + "\n"
    args.out.write_text(text)
    print(text)
    return 0 if rows and not any("failed" in r.get("error", "") for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
