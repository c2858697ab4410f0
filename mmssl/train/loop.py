"""The pretraining loop: Accelerate, one task, one dataset; nothing about modalities.

Read it top to bottom: ``_pretrain`` builds the accelerator and the :class:`Trainer` (task,
data, optimizer, schedule), restores a checkpoint if asked, and calls ``Trainer.fit``, the
loop itself: per batch, bad-example accounting, one optimisation step (forward, NaN guard,
backward with accumulation and clipping, optimizer) and, after each optimizer step, the
schedule, the task's ``on_step_end`` hook, the logging window and checkpoints. Where the run
is lives in a :class:`~mmssl.train.state.TrainerState`, which each checkpoint saves. Every
stop path leaves a complete checkpoint or the previous one.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
from mmssl.train.state import TrainerState
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
    precision = resolve_precision(cfg.precision, cfg.cpu)
    accelerator = Accelerator(
        mixed_precision=precision,
        gradient_accumulation_steps=cfg.grad_accum,
        cpu=cfg.cpu,
        step_scheduler_with_optimizer=False,
        log_with=build_trackers(cfg.report_to, recipe.run_dir) or None,
        project_dir=recipe.run_dir,
    )
    set_seed(recipe.seed)
    checkpoint = prepare_run_dir(accelerator, recipe.run_dir, resume or cfg.resume, overwrite)
    trainer = Trainer(recipe, accelerator, callbacks)
    if checkpoint is not None:
        trainer.restore(checkpoint)
    _write_run_info(recipe, accelerator, precision)
    return trainer.fit()


def _task_and_loader(recipe: Recipe, accelerator: Accelerator) -> tuple[PretextTask, DataLoader]:
    """The task (with ``model.init_from``'s weights) and the loader of its prepared data."""
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
    return task, build_loader(task, data, recipe, row_locator(recipe.data) if data is raw else None)


def _write_run_info(recipe: Recipe, accelerator: Accelerator, precision: str) -> None:
    """The resolved recipe and the environment, next to the checkpoints (main process)."""
    if accelerator.is_main_process:
        recipe.run_dir.mkdir(parents=True, exist_ok=True)
        save_recipe(recipe, recipe.run_dir / "recipe.yaml")
        (recipe.run_dir / "environment.json").write_text(
            json.dumps(environment(accelerator, precision), indent=2)
        )


@dataclass
class LogWindow:
    """Loss and throughput since the last logged step."""

    loss: torch.Tensor
    steps: int = 0
    samples: int = 0
    start: float = field(default_factory=time.perf_counter)

    def reset(self) -> None:
        self.loss.zero_()
        self.steps, self.samples, self.start = 0, 0, time.perf_counter()


class Trainer:
    """One run: the prepared task, data, optimizer and schedule, and where the run is
    (:class:`TrainerState`, what a checkpoint saves). :meth:`fit` is the loop."""

    def __init__(self, recipe: Recipe, accelerator: Accelerator, callbacks: Sequence[StepCallback]) -> None:
        self.recipe, self.cfg, self.accelerator, self.callbacks = recipe, recipe.train, accelerator, callbacks
        task, loader = _task_and_loader(recipe, accelerator)
        self.examples = loader.dataset
        self.total = total_steps(recipe, loader, accelerator.num_processes)
        optimizer = build_optimizer(task, self.cfg, accelerator.device)
        scheduler = build_scheduler(optimizer, self.cfg, self.total)
        if self.cfg.compile:
            task.compile()
        self.task, self.optimizer, self.loader, self.scheduler = accelerator.prepare(
            task, optimizer, loader, scheduler
        )
        self.plain_task: PretextTask = accelerator.unwrap_model(self.task)
        self.state = TrainerState()
        self.resumed_from: Path | None = None
        self.last_saved: Path | None = None
        self.last_metrics: dict[str, Any] = {}

    def restore(self, checkpoint: Path) -> None:
        """Model, optimizer, schedule and RNG states and the trainer state of ``checkpoint``."""
        self.state = TrainerState.from_dict(load_checkpoint(self.accelerator, checkpoint))
        self.resumed_from = self.last_saved = checkpoint
        self.accelerator.print(f"resumed from {checkpoint} at step {self.state.step}")

    def fit(self) -> RunResult:
        """Step until ``total`` steps; every way out leaves a complete checkpoint or the previous one."""
        state, accelerator = self.state, self.accelerator
        start_step = state.step
        self.logger = MetricsLogger(accelerator, self.recipe.run_dir, self.recipe.name, recipe_to_dict(self.recipe))
        self.progress = Progress(self.total, state.step, self.cfg.progress and accelerator.is_main_process)
        self.window = LogWindow(torch.zeros((), device=accelerator.device))
        self.run_start = time.perf_counter() - state.elapsed_s
        self.cpu_start = time.process_time() - state.cpu_s  # this process's CPU time, all its threads
        self.task.train()
        try:
            while state.step < self.total:
                for batch in self._epoch_batches():
                    state.batch_in_epoch += 1
                    bad, empty = self._count_bad_examples(batch)
                    if empty:
                        # every process skips it: one process stepping alone would wait forever
                        # in the next collective for the others
                        continue
                    self._seed_step()
                    out, grad_norm = self._optimisation_step(batch)
                    if out is None:  # a non-finite loss, skipped
                        continue
                    self.window.loss += out.loss.detach()
                    self.window.samples += self.cfg.batch_size * accelerator.num_processes - bad
                    if not accelerator.sync_gradients:  # accumulating
                        continue
                    self._end_step(out.metrics, grad_norm)
                    if state.step >= self.total:
                        break
                else:
                    self._next_epoch()
            if self.resumed_from is None or state.step != start_step:  # a finished run stays as it was
                self.last_saved = self.save()
        finally:
            self.progress.close()
            self.logger.close()
        bad_examples = state.bad_examples + self.plain_task.prepared_bad_examples
        return RunResult(self.recipe.run_dir, state.step, self.last_saved, self.last_metrics,
                         bad_examples, state.nan_skips)

    def _epoch_batches(self) -> Any:
        """The batches of the current epoch, less those a resumed run already saw."""
        self.loader.set_epoch(self.state.epoch)
        # with several processes Accelerate's set_epoch reaches the sampler but not the
        # dataset (an elif), so the examples' augmentation seeds get the epoch here
        self.examples.set_epoch(self.state.epoch)
        skip = self.state.batch_in_epoch
        return self.accelerator.skip_first_batches(self.loader, skip) if skip else self.loader

    def _next_epoch(self) -> None:
        if self.state.batch_in_epoch == 0:
            raise RuntimeError("the data gave no batch: fewer examples than train.batch_size?")
        self.state.epoch += 1
        self.state.batch_in_epoch = 0

    def _count_bad_examples(self, batch: dict[str, Any]) -> tuple[int, bool]:
        """This batch's bad examples over all processes, and whether a process has none left;
        fails when the run's bad examples exceed ``data.max_bad_fraction``."""
        accelerator, state, data = self.accelerator, self.state, self.recipe.data
        # one collective for both: the bad rows of all processes, and how many processes were
        # left with no example at all
        batch.pop(BAD_KEY)
        local = torch.cat([batch.pop(BAD_ROWS_KEY), torch.tensor([int(not batch)])])
        rows = accelerator.gather(local.to(accelerator.device)).view(accelerator.num_processes, -1).cpu()
        bad, empty = int((rows[:, :-1] >= 0).sum()), int(rows[:, -1].sum())
        # a bad file met again in a later epoch is counted once (a stream's positions are no
        # identity: there every bad example met counts)
        state.bad_examples += bad if data.streaming else count_new_bad(rows[:, :-1], state.bad_rows)
        state.seen_examples += self.cfg.batch_size * accelerator.num_processes
        if state.bad_examples > cfg_bad_limit(self.recipe, state.seen_examples):
            raise RuntimeError(
                f"{state.bad_examples} of {state.seen_examples} examples were bad, "
                f"more than data.max_bad_fraction={data.max_bad_fraction}"
            )
        return bad, bool(empty)

    def _seed_step(self) -> None:
        """The step's randomness (masks, dropout) depends only on where it is in the run, so a
        resumed run draws exactly what the uninterrupted one drew."""
        seed = self.recipe.seed * 1009 + self.accelerator.process_index
        torch.manual_seed(example_seed(seed, self.state.epoch, self.state.batch_in_epoch))

    def _optimisation_step(self, batch: dict[str, Any]) -> tuple[Any, torch.Tensor | None]:
        """Forward, NaN guard, backward, clipping, optimizer; Accelerate holds the update back
        until the last micro-batch of an accumulation. ``(None, None)`` when the loss was not
        finite on some process and the batch was skipped."""
        accelerator, cfg = self.accelerator, self.cfg
        with accelerator.accumulate(self.task):
            out = self.task(batch)
            if not _finite(accelerator, out.loss):
                self._skip_non_finite(out.loss)
                return None, None
            accelerator.backward(out.loss)
            grad_norm = None
            if accelerator.sync_gradients and cfg.max_grad_norm:
                grad_norm = accelerator.clip_grad_norm_(self.task.parameters(), cfg.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return out, grad_norm

    def _skip_non_finite(self, loss: torch.Tensor) -> None:
        """Count the skip; stop (naming the last good checkpoint) on ``train.on_nan: stop`` or
        after ``train.max_nan_skips``."""
        self.state.nan_skips += 1
        where = f"non-finite loss ({loss.item()}) at step {self.state.step + 1}"
        if self.cfg.on_nan == "stop" or self.state.nan_skips > self.cfg.max_nan_skips:
            raise TrainingDivergedError(f"{where}; last good checkpoint: {self.last_saved or 'none'}")
        self.accelerator.print(f"skipping the batch: {where}")
        self.optimizer.zero_grad(set_to_none=True)

    def _end_step(self, metrics: dict[str, Any], grad_norm: torch.Tensor | None) -> None:
        """After an optimizer step: schedule, the task's hook, callbacks, logging, checkpoints."""
        state, cfg = self.state, self.cfg
        self.scheduler.step()
        state.step += 1
        self.window.steps += 1
        self.plain_task.on_step_end(state.step, self.total)
        extra = {k: v for call in self.callbacks for k, v in call(self.plain_task, state.step, self.total).items()}
        logged = bool(extra) or state.step % cfg.log_every == 0 or state.step == self.total
        if logged:
            self._log({**{k: float(v) for k, v in metrics.items()}, **extra}, grad_norm)
        self.progress.update(state.step, self.last_metrics, logged)
        if cfg.save_every and state.step % cfg.save_every == 0 and state.step < self.total:
            self.last_saved = self.save()

    def _log(self, metrics: dict[str, float], grad_norm: torch.Tensor | None) -> None:
        """The logging window's mean loss and throughput with ``metrics``; a new window starts."""
        window = self.window
        elapsed = time.perf_counter() - window.start
        loss = self.accelerator.reduce(window.loss, "mean").item() / (window.steps * self.cfg.grad_accum)
        self.last_metrics = {
            "loss": loss,
            "lr": self.scheduler.get_last_lr()[0],
            "samples_per_s": window.samples / max(elapsed, 1e-9),
            "epoch": self.state.epoch,
            "bad_examples": self.state.bad_examples + self.plain_task.prepared_bad_examples,
            **metrics,
        }
        if grad_norm is not None:
            self.last_metrics["grad_norm"] = float(grad_norm)
        self.logger.log(self.state.step, self.last_metrics)
        window.reset()

    def save(self) -> Path:
        self.state.elapsed_s = time.perf_counter() - self.run_start
        self.state.cpu_s = time.process_time() - self.cpu_start
        return save_checkpoint(self.accelerator, self.recipe.run_dir, self.state.as_dict(), self.cfg.keep_last)


def cfg_bad_limit(recipe: Recipe, seen: int) -> float:
    """How many bad examples are tolerated after ``seen``: never more than the fraction allows."""
    if recipe.data.on_bad_example == "raise":
        return math.inf
    return max(recipe.train.batch_size, recipe.data.max_bad_fraction * seen)
