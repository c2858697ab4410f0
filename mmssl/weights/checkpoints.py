"""A run directory's checkpoint folders: their names, their manifests, and the weights in them.

This is the read side of the format that ``mmssl.train.checkpoint`` writes (atomically); it
sits below the tasks so that anything that loads weights (eval, export, ``init_from`` of a
task or a CLIP tower) can find and verify a checkpoint without importing the trainer.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from mmssl.errors import CheckpointError

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
MANIFEST_FILE = "manifest.json"
PREFIX = "step_"


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / STATE_FILE).is_file()]
    return sorted(found, key=checkpoint_step)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = checkpoint_dirs(run_dir)
    return found[-1] if found else None


def checkpoint_step(path: Path) -> int:
    return int(path.name[len(PREFIX):])


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(path: Path) -> None:
    """Record the size and SHA-256 of every file of a checkpoint, to verify it on resume."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    manifest = {str(f.relative_to(path)): {"size": f.stat().st_size, "sha256": _sha256(f)} for f in files}
    (path / MANIFEST_FILE).write_text(json.dumps({"files": manifest}, indent=2))


def verify_checkpoint(path: Path) -> list[str]:
    """What is wrong with a checkpoint's files (missing, truncated, changed); empty if it verifies.

    A checkpoint written before manifests existed verifies if its state file reads.
    """
    manifest_file = path / MANIFEST_FILE
    if not manifest_file.is_file():
        try:
            json.loads((path / STATE_FILE).read_text())
        except (OSError, ValueError) as err:
            return [f"{path / STATE_FILE}: {err}"]
        return []
    try:
        files = json.loads(manifest_file.read_text())["files"]
    except (OSError, ValueError, KeyError) as err:
        return [f"{manifest_file}: unreadable ({err})"]
    problems = []
    for name, want in files.items():
        file = path / name
        if not file.is_file():
            problems.append(f"{file}: missing")
        elif file.stat().st_size != want["size"]:
            problems.append(f"{file}: {file.stat().st_size} bytes, {want['size']} written")
        elif _sha256(file) != want["sha256"]:
            problems.append(f"{file}: checksum differs from the one written")
    return problems


def newest_verified(run_dir: Path) -> tuple[Path | None, list[Path], list[str]]:
    """The newest checkpoint whose files match its manifest, the newer ones that do not, and why."""
    failed: list[Path] = []
    problems: list[str] = []
    for path in reversed(checkpoint_dirs(run_dir)):
        found = verify_checkpoint(path)
        if not found:
            return path, failed, problems
        failed.append(path)
        problems.extend(found)
    return None, failed, problems


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder itself, or the newest checkpoint of a run directory that verifies
    against its manifest (with a warning naming the newer ones that do not)."""
    path = Path(path)
    if (path / STATE_FILE).is_file():
        problems = verify_checkpoint(path)
        if problems:
            raise CheckpointError(f"{path} does not verify: " + "; ".join(problems))
        return path
    found, failed, problems = newest_verified(path)
    if found is None and failed:
        raise CheckpointError(f"no checkpoint of {path} verifies: " + "; ".join(problems))
    if found is None:
        raise CheckpointError(f"{path}: no checkpoint found (is it an mmssl run directory?)")
    if failed:
        warnings.warn(f"{', '.join(p.name for p in failed)} of {path} do(es) not verify "
                      f"({'; '.join(problems)}); using {found.name}", stacklevel=2)
    return found


def model_weights(checkpoint: str | Path) -> dict[str, Any]:
    """The task's weights from a checkpoint folder, as a state dict on the CPU."""
    file = Path(checkpoint) / "model.safetensors"
    if not file.is_file():
        raise CheckpointError(f"{checkpoint}: no model.safetensors")
    try:
        return load_file(str(file))
    except Exception as err:  # SafetensorError and OSError for a truncated or garbled file
        raise CheckpointError(f"{file} could not be read ({type(err).__name__}: {err})") from err
