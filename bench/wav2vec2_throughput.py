"""Training throughput of ``task: wav2vec2`` against a plain transformers loop, same run.

Both train ``Wav2Vec2ForPreTraining`` from the same config (the recipe's preset) on the
same FSDD clips at 16 kHz with the same batch size, optimizer and mask settings:

- mmssl: ``mmssl.train.loop.pretrain`` on ``recipes/wav2vec2_fsdd.yaml`` (torchcodec
  decoding in the DataLoader, length-grouped batches, masks and distractors in the task).
- transformers: the loop of transformers' ``run_wav2vec2_pretraining_no_trainer.py``
  example: ``datasets`` decodes and resamples (``Audio(sampling_rate=16000)``),
  ``Wav2Vec2FeatureExtractor`` normalizes and pads, ``_compute_mask_indices`` and
  ``_sample_negative_indices`` draw masks and distractors, AdamW, loss / masked frames.

Both are timed from the end of step ``--warmup`` to the end of step ``--steps`` (wall and
process CPU time, read in the task's ``on_step_end`` hook for mmssl); audio seconds count
the real (unpadded) samples of the batches of those steps. CPU ms per sample is the
steadier figure on a shared machine.

    .venv/bin/python bench/wav2vec2_throughput.py --steps 60 --warmup 20 --batch-size 16 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from unittest import mock

import datasets
import torch
from torch.utils.data import DataLoader
from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2ForPreTraining
from transformers.models.wav2vec2.modeling_wav2vec2 import (
    _compute_mask_indices,
    _sample_negative_indices,
)

from mmssl.recipe import load_recipe
from mmssl.tasks.base import build_task
from mmssl.tasks.wav2vec2 import Wav2Vec2Task
from mmssl.train.loop import pretrain

RECIPE = "recipes/wav2vec2_fsdd.yaml"


class StepClock:
    """Wall and CPU time at each optimizer step, and the real audio in each collated batch."""

    def __init__(self) -> None:
        self.times: dict[int, tuple[float, float]] = {}
        self.batches: list[tuple[int, int]] = []  # (clips, real samples) per batch, in order

    def add(self, batch: dict[str, torch.Tensor]) -> None:
        mask = batch["attention_mask"]
        self.batches.append((mask.shape[0], int(mask.sum())))

    def result(self, warmup: int, steps: int) -> dict[str, float]:
        wall = self.times[steps][0] - self.times[warmup][0]
        cpu = self.times[steps][1] - self.times[warmup][1]
        samples = sum(clips for clips, _ in self.batches[warmup:steps])
        audio = sum(real for _, real in self.batches[warmup:steps]) / 16000
        return {"samples_per_s": samples / wall, "audio_s_per_s": audio / wall,
                "cpu_ms_per_sample": 1000 * cpu / samples}


def run_mmssl(args: argparse.Namespace, out_dir: str) -> dict[str, float]:
    """The real loop; the task's hooks are wrapped only to read the clock and the batches."""
    recipe = load_recipe(RECIPE, [
        f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size}",
        "train.progress=false", "train.save_every=0", f"output_dir={out_dir}",
        f"model.preset={args.preset}",
    ])
    clock = StepClock()
    real_step_end, real_collate = Wav2Vec2Task.on_step_end, Wav2Vec2Task.collate

    def on_step_end(self, step: int, total: int) -> None:
        real_step_end(self, step, total)
        clock.times[step] = (time.perf_counter(), time.process_time())

    def collate(self, examples: list[dict]) -> dict:
        batch = real_collate(self, examples)
        clock.add(batch)
        return batch

    with mock.patch.object(Wav2Vec2Task, "on_step_end", on_step_end), \
            mock.patch.object(Wav2Vec2Task, "collate", collate):
        pretrain(recipe)
    return clock.result(args.warmup, args.steps)


def run_transformers(args: argparse.Namespace) -> dict[str, float]:
    recipe = load_recipe(RECIPE, [f"model.preset={args.preset}"])
    cfg = recipe.task
    config = build_task(recipe).model.config  # the same Wav2Vec2Config mmssl builds
    torch.manual_seed(recipe.seed)
    model = Wav2Vec2ForPreTraining(config).train()
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=True
    )
    ds = datasets.load_dataset(
        "parquet", data_files={"train": recipe.data.data_files["train"]}, split="train"
    ).cast_column("audio", datasets.Audio(sampling_rate=16000))
    max_samples = int(recipe.data.audio.max_seconds * 16000)

    def collate(rows: list[dict]) -> dict[str, torch.Tensor]:
        waves = [row["audio"].get_all_samples().data.mean(0).numpy()[:max_samples] for row in rows]
        batch = extractor(waves, sampling_rate=16000, padding=True, return_tensors="pt")
        frames = int(model._get_feat_extract_output_lengths(batch["input_values"].shape[1]))
        sub_mask = model._get_feature_vector_attention_mask(frames, batch["attention_mask"])
        mask = _compute_mask_indices(
            (len(rows), frames), cfg.mask_prob, cfg.mask_length, attention_mask=sub_mask, min_masks=cfg.min_masks
        )
        negatives = _sample_negative_indices((len(rows), frames), cfg.num_negatives, sub_mask.numpy())
        batch["mask_time_indices"] = torch.tensor(mask, dtype=torch.bool)
        batch["sampled_negative_indices"] = torch.tensor(negatives, dtype=torch.long)
        return batch

    loader = DataLoader(ds, batch_size=args.batch_size, shuffle=True, collate_fn=collate, drop_last=True)
    train = recipe.train
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, betas=tuple(train.betas),
                                  weight_decay=train.weight_decay)
    clock = StepClock()
    step = 0
    while step < args.steps:
        for batch in loader:
            clock.add(batch)
            num_masked = batch["mask_time_indices"].sum()
            out = model(**batch)
            loss = out.loss / num_masked
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train.max_grad_norm)
            optimizer.step()
            step += 1
            model.set_gumbel_temperature(
                max(cfg.max_gumbel_temperature * cfg.gumbel_temperature_decay**step, cfg.min_gumbel_temperature)
            )
            clock.times[step] = (time.perf_counter(), time.process_time())
            if step >= args.steps:
                break
    return clock.result(args.warmup, args.steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--preset", default="nano")
    parser.add_argument("--repeats", type=int, default=2, help="alternate the two this many times")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps({"torch": torch.__version__, "load_avg": os.getloadavg()[0], **vars(args)}))
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as out_dir:
            print(json.dumps({"repeat": repeat, "mmssl": run_mmssl(args, out_dir)}), flush=True)
        print(json.dumps({"repeat": repeat, "transformers": run_transformers(args)}), flush=True)


if __name__ == "__main__":
    main()
