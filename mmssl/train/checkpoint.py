"""Atomic checkpoints in the run directory, and loading one to resume.

A checkpoint is an Accelerate state folder (model weights as safetensors, optimizer,
scheduler, RNG states) plus ``trainer_state.json`` (step, epoch, data position). It is
written under a temporary name and renamed only when complete, so a crash, a kill or a
full disk during a save leaves the previous checkpoint as it was. Their names, manifests
and weights are read by ``mmssl.weights.checkpoints``, below the tasks.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from mmssl.errors import CheckpointError
from mmssl.weights.checkpoints import (
    CHECKPOINTS,
    PREFIX,
    STATE_FILE,
    checkpoint_dirs,
    checkpoint_step,
    latest_checkpoint,
    write_manifest,
)


class _TiedWeightsFilter(logging.Filter):
    """Accelerate warns on every save of a model with tied weights (MLM's decoder is its
    word embeddings) that it dropped the tied copy; loading ties it again, so the warning
    ("[RANK 0] Removed shared tensor ...") is noise on every text run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Removed shared tensor" not in record.getMessage()


logging.getLogger("accelerate.utils.other").addFilter(_TiedWeightsFilter())


def _fsync_tree(path: Path) -> None:
    for file in path.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
    fsync_dir(path)


def fsync_dir(path: Path) -> None:
    """Make a rename or removal inside ``path`` durable (a folder's entries are its data)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    accelerator: Accelerator, run_dir: str | Path, state: dict[str, Any], keep_last: int
) -> Path:
    """Write a checkpoint for ``state['step']`` atomically and prune to the last ``keep_last``."""
    root = Path(run_dir) / CHECKPOINTS
    final = root / f"{PREFIX}{state['step']:08d}"
    tmp = root / f".tmp-{final.name}"
    previous = latest_checkpoint(run_dir)
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    fail = partial(_save_failed, accelerator, tmp, state, previous)
    _on_every_process(accelerator, partial(accelerator.save_state, str(tmp), safe_serialization=True), fail)
    # only once every process's files are in, so the manifest covers them all
    _on_every_process(accelerator, partial(_seal, accelerator, tmp, state), fail)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _install(tmp, final)
        prune(run_dir, keep_last, final)
    accelerator.wait_for_everyone()
    return final


def _seal(accelerator: Accelerator, tmp: Path, state: dict[str, Any]) -> None:
    """The trainer state and the manifest, then everything synced to disk (main process)."""
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
        write_manifest(tmp)
        _fsync_tree(tmp)


def _install(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an existing ``final`` is renamed away first, removed last."""
    old = final.with_name(f".old-{final.name}")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)


def prune(run_dir: str | Path, keep_last: int, written: Path) -> None:
    """Keep the ``keep_last`` newest checkpoints up to ``written``; never ``written`` itself."""
    if keep_last <= 0:
        return
    older = [p for p in checkpoint_dirs(run_dir) if checkpoint_step(p) < checkpoint_step(written)]
    for old in older[: max(0, len(older) - (keep_last - 1))]:
        # renamed first, so a kill during the removal never leaves a half-deleted "checkpoint"
        doomed = old.with_name(f".old-{old.name}")
        os.replace(old, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    fsync_dir(written.parent)


def _save_failed(
    accelerator: Accelerator, tmp: Path, state: dict[str, Any], previous: Path | None, failed: int, reason: str
) -> CheckpointError:
    """Remove the partial checkpoint and describe the failure (the step, free space, last good)."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    free = shutil.disk_usage(tmp.parent).free / 2**20
    return CheckpointError(
        f"could not write the checkpoint for step {state['step']} in {tmp.parent} "
        f"({free:.1f} MiB free; a full disk?) on {failed} of {accelerator.num_processes} "
        f"process(es): {reason}. The last good checkpoint is {previous or 'none yet'}."
    )


def _on_every_process(
    accelerator: Accelerator, write: Callable[[], Any], fail: Callable[[int, str], CheckpointError]
) -> None:
    """Run ``write``; every process learns whether all of them succeeded, so all raise together
    instead of some waiting forever for the ones that failed."""
    reason = ""
    try:
        write()
    except Exception as err:  # torch.save reports a full disk as RuntimeError, not OSError
        # only its text is kept: its frames hold the writer's open file (the full disk stays busy)
        reason = f"{type(err).__name__}: {err}"
    failed = _count_failures(accelerator, bool(reason))
    if failed:
        raise fail(failed, reason or "another process failed to write its part")


def _count_failures(accelerator: Accelerator, failed: bool) -> int:
    flag = torch.tensor([float(failed)], device=accelerator.device)
    return int(accelerator.reduce(flag, reduction="sum").item())


def load_checkpoint(accelerator: Accelerator, path: str | Path) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG from ``path``; return its trainer state."""
    path = Path(path)
    if not (path / STATE_FILE).is_file():
        raise CheckpointError(f"{path} is not a complete mmssl checkpoint (no {STATE_FILE})")
    try:
        accelerator.load_state(str(path))
    except Exception as err:  # safetensors, torch.load and zip readers each raise their own type
        raise CheckpointError(f"{path} could not be loaded ({type(err).__name__}: {err})") from err
    return json.loads((path / STATE_FILE).read_text())
