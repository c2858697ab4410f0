"""Atomic checkpoints in the run directory, and finding and loading them again.

A checkpoint is an Accelerate state folder (model weights as safetensors, optimizer,
scheduler, RNG states) plus ``trainer_state.json`` (step, epoch, data position). It is
written under a temporary name and renamed only when complete, so a crash, a kill or a
full disk during a save leaves the previous checkpoint as it was.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from mmssl.errors import CheckpointError


class _TiedWeightsFilter(logging.Filter):
    """Accelerate warns on every save of a model with tied weights (MLM's decoder is its
    word embeddings) that it dropped the tied copy; loading ties it again, so the warning
    ("[RANK 0] Removed shared tensor ...") is noise on every text run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Removed shared tensor" not in record.getMessage()


logging.getLogger("accelerate.utils.other").addFilter(_TiedWeightsFilter())

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
PREFIX = "step_"


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = checkpoint_dirs(run_dir)
    return found[-1] if found else None


def _fsync_tree(path: Path) -> None:
    for file in path.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())


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
    # every process learns whether all of them wrote their part, so all raise together
    # instead of some waiting forever for the ones that failed
    try:
        accelerator.save_state(str(tmp), safe_serialization=True)
        if accelerator.is_main_process:
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
            _fsync_tree(tmp)
    except Exception as err:  # torch.save reports a full disk as RuntimeError, not OSError
        failed = _count_failures(accelerator, True)
        raise _save_failed(accelerator, tmp, state, previous, failed, f"{type(err).__name__}: {err}") from err
    failed = _count_failures(accelerator, False)
    if failed:
        raise _save_failed(accelerator, tmp, state, previous, failed, "another process failed to write its part")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in checkpoint_dirs(run_dir)[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


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


def _count_failures(accelerator: Accelerator, failed: bool) -> int:
    flag = torch.tensor([float(failed)], device=accelerator.device)
    return int(accelerator.reduce(flag, reduction="sum").item())


def load_checkpoint(accelerator: Accelerator, path: str | Path) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG from ``path``; return its trainer state."""
    path = Path(path)
    if not (path / STATE_FILE).is_file():
        raise CheckpointError(f"{path} is not a complete mmssl checkpoint (no {STATE_FILE})")
    accelerator.load_state(str(path))
    return json.loads((path / STATE_FILE).read_text())


def resolve_resume(run_dir: str | Path, resume: str) -> Path | None:
    """``never`` -> None, ``auto`` -> the latest checkpoint if any, else a checkpoint path."""
    if resume == "never":
        return None
    if resume == "auto":
        return latest_checkpoint(run_dir)
    path = Path(resume)
    if (path / STATE_FILE).is_file():
        return path
    found = latest_checkpoint(path)
    if found is None:
        raise CheckpointError(f"train.resume: no checkpoint at {resume!r}")
    return found


def model_weights(checkpoint: str | Path) -> dict[str, Any]:
    """The task's weights from a checkpoint folder, as a state dict on the CPU."""
    file = Path(checkpoint) / "model.safetensors"
    if not file.is_file():
        raise CheckpointError(f"{checkpoint}: no model.safetensors")
    return load_file(str(file))
