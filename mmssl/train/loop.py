"""The pretraining loop: Accelerate, one task, one dataset; nothing about modalities.

Read it top to bottom: build the task and its data, the optimizer and schedule, restore a
checkpoint if asked, then step until ``total_steps``: forward, NaN guard, backward with
accumulation and clipping, optimizer and schedule, the task's ``on_step_end`` hook,
logging, checkpoints. Every stop path leaves a complete checkpoint or the previous one.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import accelerate
import datasets
import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from mmssl import __version__
from mmssl.backbones.checkpoint import adopt_checkpoint
from mmssl.data.examples import (
    BAD_KEY,
    BAD_ROWS_KEY,
    EpochSampler,
    MapExamples,
    SkippingCollator,
    StreamExamples,
    count_new_bad,
    example_seed,
)
from mmssl.data.length_grouping import LengthGroupedSampler
from mmssl.data.sources import RowLocator, load_data, row_locator
from mmssl.errors import TrainingDivergedError
from mmssl.recipe import Recipe, recipe_to_dict, save_recipe
from mmssl.tasks.base import PretextTask, build_task
from mmssl.train.checkpoint import load_checkpoint, save_checkpoint
from mmssl.train.logging import MetricsLogger, Progress, build_trackers
from mmssl.train.optim import build_optimizer, build_scheduler
from mmssl.train.resume import prepare_run_dir
from mmssl.train.run_lock import run_lock
from mmssl.weights import init_weights


@dataclass
class RunResult:
    run_dir: Path
    step: int
    checkpoint: Path | None
    last_metrics: dict[str, Any]
    bad_examples: int
    nan_skips: int


def resolve_precision(requested: str, cpu: bool) -> str:
    """``auto`` is bf16 on a CUDA device that supports it, full precision elsewhere."""
    if requested != "auto":
        return requested
    on_cuda = torch.cuda.is_available() and not cpu
    return "bf16" if on_cuda and torch.cuda.is_bf16_supported() else "no"


def build_loader(
    task: PretextTask, data: Any, recipe: Recipe, locate: RowLocator | None = None
) -> DataLoader:
    """A DataLoader whose batches depend only on (seed, epoch).

    Accelerate's ``set_epoch`` on the prepared loader passes the epoch to the sampler (order)
    and to the examples (augmentation seeds); workers are not persistent, so each epoch's
    workers get the examples with the new epoch.
    """
    cfg = recipe.data
    preprocess = partial(task.preprocess, train=True)
    collate = SkippingCollator(task.collate)
    common = dict(
        batch_size=recipe.train.batch_size,
        collate_fn=collate,
        num_workers=cfg.num_workers,
        pin_memory=torch.cuda.is_available() and not recipe.train.cpu,
        drop_last=True,
    )
    if recipe.data.streaming:
        stream = data.shuffle(seed=recipe.seed, buffer_size=cfg.shuffle_buffer)
        examples = StreamExamples(stream, preprocess, cfg.on_bad_example, recipe.seed)
        return DataLoader(examples, **common)
    examples = MapExamples(data, preprocess, cfg.on_bad_example, recipe.seed, locate)
    sampler = EpochSampler(len(examples), recipe.seed)
    if cfg.group_by_length:
        lengths = task.example_lengths(data)
        if lengths is None:
            raise ValueError(f"data.group_by_length: task {recipe.task.name!r} cannot tell example lengths")
        sampler = LengthGroupedSampler(lengths, recipe.train.batch_size, recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    return DataLoader(examples, sampler=sampler, generator=generator, **common)


def total_steps(recipe: Recipe, loader: DataLoader, num_processes: int) -> int:
    cfg = recipe.train
    if cfg.max_steps is not None:
        return cfg.max_steps
    if recipe.data.streaming:
        raise ValueError("train.max_steps is required with data.streaming (the length is unknown)")
    batches = len(loader) // num_processes if num_processes > 1 else len(loader)
    return max(1, cfg.epochs * (batches // cfg.grad_accum))


def environment(accelerator: Accelerator, precision: str) -> dict[str, Any]:
    device = accelerator.device
    return {
        "mmssl": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "accelerate": accelerate.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "num_processes": accelerator.num_processes,
        "mixed_precision": precision,
        "torch_threads": torch.get_num_threads(),
    }


def _finite(accelerator: Accelerator, loss: torch.Tensor) -> bool:
    flag = torch.isfinite(loss.detach()).float().reshape(1)
    return bool(accelerator.reduce(flag, reduction="sum").item() == accelerator.num_processes)


#: called after every optimizer step with (task, step, total steps); returns metrics to log
#: at that step (an empty dict most steps), e.g. ``mmssl.eval.monitor.OnlineMonitor``
StepCallback = Callable[[PretextTask, int, int], dict[str, float]]


def pretrain(
    recipe: Recipe, resume: str | None = None, callbacks: Sequence[StepCallback] = (), overwrite: bool = False
) -> RunResult:
    """Run the recipe's pretraining; ``resume`` overrides ``train.resume``.

    The run directory is locked for the whole run (mmssl/train/run_lock.py); ``overwrite``
    starts again from scratch in a folder that holds an earlier run, moving its files aside.
    """
    with run_lock(recipe.run_dir, "pretrain"):
        return _pretrain(recipe, resume, callbacks, overwrite)


def _pretrain(
    recipe: Recipe, resume: str | None, callbacks: Sequence[StepCallback], overwrite: bool
) -> RunResult:
    cfg = recipe.train
    if (cfg.max_steps is None) == (cfg.epochs is None):
        raise ValueError("train: set exactly one of max_steps or epochs")
    run_dir = recipe.run_dir
    precision = resolve_precision(cfg.precision, cfg.cpu)
    accelerator = Accelerator(
        mixed_precision=precision,
        gradient_accumulation_steps=cfg.grad_accum,
        cpu=cfg.cpu,
        step_scheduler_with_optimizer=False,
        log_with=build_trackers(cfg.report_to, run_dir) or None,
        project_dir=run_dir,
    )
    set_seed(recipe.seed)

    checkpoint = prepare_run_dir(accelerator, run_dir, resume or cfg.resume, overwrite)

    adopt_checkpoint(recipe)  # continued pretraining: the init_from checkpoint's architecture
    task = build_task(recipe)
    if recipe.model.init_from:
        init_weights(task, recipe.model.init_from)
    # as in the HF examples: the main process builds the datasets caches, the others reuse them
    with accelerator.main_process_first():
        columns = task.required_columns + task.optional_columns
        raw = load_data(recipe.data, required=task.required_columns, keep=columns)
        data = task.prepare_dataset(raw)
    # bad examples name their parquet file and row, while rows are still the file's rows
    loader = build_loader(task, data, recipe, row_locator(recipe.data) if data is raw else None)
    examples = loader.dataset
    steps_total = total_steps(recipe, loader, accelerator.num_processes)
    optimizer = build_optimizer(task, cfg, accelerator.device)
    scheduler = build_scheduler(optimizer, cfg, steps_total)
    if cfg.compile:
        task.compile()
    task, optimizer, loader, scheduler = accelerator.prepare(task, optimizer, loader, scheduler)
    plain_task: PretextTask = accelerator.unwrap_model(task)

    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "samples": 0,
             "bad_examples": 0, "bad_rows": [], "seen_examples": 0, "nan_skips": 0, "elapsed_s": 0.0,
             "cpu_s": 0.0}
    if checkpoint is not None:
        state.update(load_checkpoint(accelerator, checkpoint))
        accelerator.print(f"resumed from {checkpoint} at step {state['step']}")
    start_step = state["step"]
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_recipe(recipe, run_dir / "recipe.yaml")
        (run_dir / "environment.json").write_text(
            json.dumps(environment(accelerator, precision), indent=2)
        )
    logger = MetricsLogger(accelerator, run_dir, recipe.name, recipe_to_dict(recipe))
    progress = Progress(steps_total, state["step"], cfg.progress and accelerator.is_main_process)
    last_saved = checkpoint
    last_metrics: dict[str, Any] = {}
    window_loss = torch.zeros((), device=accelerator.device)
    window_steps, window_samples, window_start = 0, 0, time.perf_counter()
    run_start = time.perf_counter() - state["elapsed_s"]
    cpu_start = time.process_time() - state["cpu_s"]  # this process's CPU time, all its threads
    task.train()

    def save() -> Path:
        state["elapsed_s"] = time.perf_counter() - run_start
        state["cpu_s"] = time.process_time() - cpu_start
        return save_checkpoint(accelerator, run_dir, state, cfg.keep_last)

    try:
        while state["step"] < steps_total:
            loader.set_epoch(state["epoch"])
            # with several processes Accelerate's set_epoch reaches the sampler but not the
            # dataset (an elif), so the examples' augmentation seeds get the epoch here
            examples.set_epoch(state["epoch"])
            skip = state["batch_in_epoch"]
            batches = accelerator.skip_first_batches(loader, skip) if skip else loader
            for batch in batches:
                state["batch_in_epoch"] += 1
                # one collective for both: the bad rows of all processes, and how many processes
                # were left with no example at all
                batch.pop(BAD_KEY)
                local = torch.cat([batch.pop(BAD_ROWS_KEY), torch.tensor([int(not batch)])])
                rows = accelerator.gather(local.to(accelerator.device)).view(accelerator.num_processes, -1).cpu()
                bad, empty = int((rows[:, :-1] >= 0).sum()), int(rows[:, -1].sum())
                # a bad file met again in a later epoch is counted once (a stream's positions
                # are no identity: there every bad example met counts)
                state["bad_examples"] += bad if recipe.data.streaming else count_new_bad(rows[:, :-1], state["bad_rows"])
                state["seen_examples"] += cfg.batch_size * accelerator.num_processes
                if state["bad_examples"] > cfg_bad_limit(recipe, state["seen_examples"]):
                    raise RuntimeError(
                        f"{state['bad_examples']} of {state['seen_examples']} examples were bad, "
                        f"more than data.max_bad_fraction={recipe.data.max_bad_fraction}"
                    )
                if empty:
                    # every process skips it: one process stepping alone would wait forever in
                    # the next collective for the others
                    continue
                # the step's randomness (masks, dropout) depends only on where it is in the
                # run, so a resumed run draws exactly what the uninterrupted one drew
                torch.manual_seed(
                    example_seed(recipe.seed * 1009 + accelerator.process_index,
                                 state["epoch"], state["batch_in_epoch"])
                )
                with accelerator.accumulate(task):
                    out = task(batch)
                    if not _finite(accelerator, out.loss):
                        state["nan_skips"] += 1
                        where = f"non-finite loss ({out.loss.item()}) at step {state['step'] + 1}"
                        if cfg.on_nan == "stop" or state["nan_skips"] > cfg.max_nan_skips:
                            raise TrainingDivergedError(
                                f"{where}; last good checkpoint: {last_saved or 'none'}"
                            )
                        accelerator.print(f"skipping the batch: {where}")
                        optimizer.zero_grad(set_to_none=True)
                        continue
                    accelerator.backward(out.loss)
                    grad_norm = None
                    if accelerator.sync_gradients and cfg.max_grad_norm:
                        grad_norm = accelerator.clip_grad_norm_(task.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                window_loss += out.loss.detach()
                window_samples += (cfg.batch_size * accelerator.num_processes) - bad
                if not accelerator.sync_gradients:
                    continue
                scheduler.step()
                state["step"] += 1
                window_steps += 1
                plain_task.on_step_end(state["step"], steps_total)
                extra = {k: v for call in callbacks for k, v in call(plain_task, state["step"], steps_total).items()}
                logged = bool(extra) or state["step"] % cfg.log_every == 0 or state["step"] == steps_total
                if logged:
                    elapsed = time.perf_counter() - window_start
                    loss = accelerator.reduce(window_loss, "mean").item() / (window_steps * cfg.grad_accum)
                    last_metrics = {
                        "loss": loss,
                        "lr": scheduler.get_last_lr()[0],
                        "samples_per_s": window_samples / max(elapsed, 1e-9),
                        "epoch": state["epoch"],
                        "bad_examples": state["bad_examples"] + plain_task.prepared_bad_examples,
                        **{k: float(v) for k, v in out.metrics.items()},
                        **extra,
                    }
                    if grad_norm is not None:
                        last_metrics["grad_norm"] = float(grad_norm)
                    logger.log(state["step"], last_metrics)
                    window_loss.zero_()
                    window_steps, window_samples, window_start = 0, 0, time.perf_counter()
                progress.update(state["step"], last_metrics, logged)
                if cfg.save_every and state["step"] % cfg.save_every == 0 and state["step"] < steps_total:
                    last_saved = save()
                if state["step"] >= steps_total:
                    break
            else:
                if state["batch_in_epoch"] == 0:
                    raise RuntimeError("the data gave no batch: fewer examples than train.batch_size?")
                state["epoch"] += 1
                state["batch_in_epoch"] = 0
        if checkpoint is None or state["step"] != start_step:  # a finished run stays as it was
            last_saved = save()
    finally:
        progress.close()
        logger.close()
    return RunResult(run_dir, state["step"], last_saved, last_metrics,
                     state["bad_examples"] + plain_task.prepared_bad_examples, state["nan_skips"])


def cfg_bad_limit(recipe: Recipe, seen: int) -> float:
    """How many bad examples are tolerated after ``seen``: never more than the fraction allows."""
    if recipe.data.on_bad_example == "raise":
        return math.inf
    return max(recipe.train.batch_size, recipe.data.max_bad_fraction * seen)
