"""Choosing what a run starts from, and making the run directory agree with that choice.

``train.resume`` (or ``--resume``) is one of:

- ``never``: start from scratch; a folder that already holds a run (checkpoints or metrics)
  is refused unless ``overwrite`` is asked for;
- ``latest`` (``--resume`` alone): the newest checkpoint that verifies against its manifest;
  finding none is an error;
- ``auto``: as ``latest``, but start from scratch when there is no checkpoint (for jobs that
  a scheduler restarts);
- a path: that checkpoint, or the newest verified one of that run directory.

Nothing is deleted on the way. Checkpoints newer than the one resumed from (an abandoned
branch, or ones that fail verification) and the metrics logged after it move to
``RUN_DIR/abandoned/<time>/``, so that "latest" is always the last checkpoint of the history
being continued; a fresh start over an earlier run's files moves those there too.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from accelerate import Accelerator

from mmssl.errors import CheckpointError
from mmssl.train.checkpoint import fsync_dir
from mmssl.train.state import TrainerState
from mmssl.weights.checkpoints import (
    CHECKPOINTS,
    PREFIX,
    STATE_FILE,
    checkpoint_dirs,
    checkpoint_step,
    newest_verified,
    verify_checkpoint,
)

ABANDONED = "abandoned"
METRICS = "metrics.jsonl"
#: what a run writes besides its recipe and environment: set aside on a fresh start over it
RUN_OUTPUTS = (CHECKPOINTS, METRICS, "tensorboard", "eval")


@dataclass
class ResumePlan:
    """The checkpoint to load (None: from scratch) and what to move out of its way."""

    checkpoint: Path | None
    set_aside: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def step(self) -> int:
        return TrainerState.read(self.checkpoint).step if self.checkpoint else 0


def _verified(run_dir: Path, what: str) -> ResumePlan:
    checkpoint, failed, problems = newest_verified(run_dir)
    if checkpoint is None and failed:
        raise CheckpointError(f"{what}: no checkpoint of {run_dir} verifies: " + "; ".join(problems))
    plan = ResumePlan(checkpoint)
    if failed:
        plan.notes.append(f"{', '.join(p.name for p in failed)} do(es) not verify ({'; '.join(problems)}); "
                          f"resuming from {checkpoint} instead")
    return plan


def _fresh(run_dir: Path, overwrite: bool) -> ResumePlan:
    existing = [run_dir / name for name in RUN_OUTPUTS if (run_dir / name).exists()]
    if existing and not overwrite:
        what = "checkpoints" if checkpoint_dirs(run_dir) else "the logs of an earlier run (no checkpoint)"
        raise CheckpointError(
            f"{run_dir} already holds {what}; resume it with --resume (train.resume=auto), "
            "start it again with --overwrite, or choose another output_dir"
        )
    return ResumePlan(None, set_aside=existing)


def _given(resume: str) -> ResumePlan:
    path = Path(resume)
    if (path / STATE_FILE).is_file():
        problems = verify_checkpoint(path)
        if problems:
            raise CheckpointError(f"train.resume: {path} does not verify: " + "; ".join(problems))
        return ResumePlan(path)
    if path.is_dir():
        plan = _verified(path, "train.resume")
        if plan.checkpoint is not None:
            return plan
    raise CheckpointError(f"train.resume: no checkpoint at {resume!r}")


def plan_resume(run_dir: Path, resume: str, overwrite: bool = False) -> ResumePlan:
    """Decide where the run starts; reads the run directory, changes nothing."""
    if overwrite and resume != "never":
        raise ValueError("--overwrite starts the run again from scratch; it cannot go with --resume")
    if resume == "never":
        return _fresh(run_dir, overwrite)
    if resume not in ("auto", "latest"):
        plan = _given(resume)
    else:
        plan = _verified(run_dir, f"train.resume={resume}")
        if plan.checkpoint is None and resume == "latest":
            raise CheckpointError(
                f"--resume: {run_dir} holds no checkpoint to resume from; start the run again with "
                "--overwrite (or without --resume if the folder is new)"
            )
        if plan.checkpoint is None:
            return _fresh(run_dir, overwrite=True)
    step = plan.step
    plan.set_aside = [p for p in checkpoint_dirs(run_dir) if checkpoint_step(p) > step]
    if plan.set_aside:
        plan.notes.append(f"resuming from step {step}: moving the later checkpoint(s) "
                          f"{', '.join(p.name for p in plan.set_aside)} aside to {run_dir / ABANDONED}")
    return plan


def _move_aside(run_dir: Path, paths: list[Path], keep_metrics_to: int | None) -> Path | None:
    """Move ``paths`` (and the metrics after step ``keep_metrics_to``) into a new abandoned folder."""
    metrics = run_dir / METRICS
    kept, dropped = [], []
    if keep_metrics_to is not None and metrics.is_file():
        kept, dropped = _split_metrics(metrics.read_text().splitlines(), keep_metrics_to)
    if not paths and not dropped:
        return None
    (run_dir / ABANDONED).mkdir(exist_ok=True)
    aside = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=run_dir / ABANDONED))
    if dropped:
        (aside / METRICS).write_text("".join(f"{line}\n" for line in dropped))
        tmp = metrics.with_name(f".tmp-{METRICS}")
        tmp.write_text("".join(f"{line}\n" for line in kept))
        os.replace(tmp, metrics)
    for path in paths:
        os.replace(path, aside / path.name)
    return aside


def _split_metrics(lines: list[str], step: int) -> tuple[list[str], list[str]]:
    kept, dropped = [], []
    for line in lines:
        try:
            keep = json.loads(line)["step"] <= step
        except (ValueError, KeyError, TypeError):
            keep = False  # a line cut short by a kill
        (kept if keep else dropped).append(line)
    return kept, dropped


def clean_partial_saves(run_dir: Path) -> None:
    """Remove what an interrupted save left: ``.tmp-step_*`` and ``.old-step_*`` folders."""
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return
    for path in root.iterdir():
        if path.name.startswith((f".tmp-{PREFIX}", f".old-{PREFIX}")):
            shutil.rmtree(path, ignore_errors=True)
    fsync_dir(root)


def prepare_run_dir(accelerator: Accelerator, run_dir: Path, resume: str, overwrite: bool = False) -> Path | None:
    """Plan on every process, then (main process) clean up and move aside; returns the checkpoint."""
    plan = plan_resume(run_dir, resume, overwrite)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        clean_partial_saves(run_dir)
        keep = plan.step if plan.checkpoint is not None else None
        aside = _move_aside(run_dir, plan.set_aside, keep)
        for note in plan.notes:
            accelerator.print(note)
        if aside is not None and plan.checkpoint is None:
            accelerator.print(f"starting {run_dir} again: the earlier run's files are now in {aside}")
    accelerator.wait_for_everyone()
    return plan.checkpoint
