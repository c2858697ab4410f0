"""Fault injection on run directories: does every fault leave a run that resumes exactly?

A tiny MAE (16 steps, checkpoints every 4, ``keep_last: 3``) is trained once without
interruption, then again under each fault, resumed with ``train.resume=auto``, and its final
weights compared bit for bit with the uninterrupted run's:

- SIGKILL (kill -9) at random points: inside a step's forward pass, or right after a step's
  metrics line was written;
- SIGKILL inside each phase of a checkpoint write: with the state files half written, after
  the manifest (before the rename), after the rename (before pruning);
- a full disk (a small tmpfs, later enlarged) during the second checkpoint;
- the newest checkpoint corrupted (truncated weights) after a kill.

The killed runs are real ``mmssl pretrain`` processes that SIGKILL themselves at the chosen
point (no timing or polling). Each completed checkpoint is journaled as it is written; a
file is "lost" when a journaled checkpoint that pruning should have kept is missing a file,
or holds one that differs from its manifest, after the fault (the file corrupted on purpose
is not counted). Run from the repository root, as root for the tmpfs:

    OMP_NUM_THREADS=1 .venv/bin/python bench/fault_injection.py --points 20 --seed 0

``--small`` runs one point of each kind (tests/test_reliability_faults.py runs it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

RECIPE = {
    "name": "faults",
    "task": {"name": "mae"},
    "model": {"preset": "nano", "config": {
        "patch_size": 4, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 64, "decoder_hidden_size": 32, "decoder_num_hidden_layers": 1,
        "decoder_num_attention_heads": 2, "decoder_intermediate_size": 64}},
    "data": {"source": "sklearn_digits", "max_examples": 48, "image": {"size": 16}},
    "train": {"batch_size": 16, "max_steps": 16, "save_every": 4, "keep_last": 3, "cpu": True,
              "lr": 1e-3, "warmup_steps": 2, "log_every": 1, "progress": False},
}
STEPS, KEEP_LAST = RECIPE["train"]["max_steps"], RECIPE["train"]["keep_last"]
SAVE_PHASES = ("files", "sealed", "renamed")
REPO = Path(__file__).resolve().parents[1]
JOURNAL = "journal.jsonl"


# ----------------------------------------------------------------------------- the killed process


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _journal_saves(journal: Path) -> None:
    """Record each checkpoint once ``save_checkpoint`` has returned, with its manifest."""
    import mmssl.train.loop as loop

    save = loop.save_checkpoint

    def journaled(*args, **kwargs):
        path = save(*args, **kwargs)
        manifest = json.loads((path / "manifest.json").read_text())["files"]
        with open(journal, "a") as handle:
            handle.write(json.dumps({"path": str(path), "files": manifest}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return path

    loop.save_checkpoint = journaled


def _plant(point: str) -> None:
    """Make this process SIGKILL itself at ``point`` (``forward:N``, ``logged:N``, ``save:N:PHASE``)."""
    import mmssl.train.checkpoint as checkpoint
    from mmssl.tasks.mae import MAETask
    from mmssl.train.logging import MetricsLogger

    kind, step, *phase = point.split(":")
    step = int(step)
    if kind == "forward":
        forward, calls = MAETask.forward, [0]

        def counting(self, batch):
            calls[0] += 1
            if calls[0] == step:
                _die()
            return forward(self, batch)

        MAETask.forward = counting
    elif kind == "logged":
        log = MetricsLogger.log

        def logging(self, at, metrics):
            log(self, at, metrics)
            if at == step:
                _die()

        MetricsLogger.log = logging
    elif phase == ["files"]:
        from accelerate import Accelerator

        save_state = Accelerator.save_state

        def half_written(self, output_dir=None, **kwargs):
            save_state(self, output_dir, **kwargs)
            if output_dir.endswith(f"step_{step:08d}"):
                weights = Path(output_dir) / "model.safetensors"
                weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
                _die()

        Accelerator.save_state = half_written
    elif phase == ["sealed"]:  # the manifest is written, the folder not yet renamed
        write_manifest = checkpoint.write_manifest

        def sealed(path):
            write_manifest(path)
            if path.name == f".tmp-step_{step:08d}":
                _die()

        checkpoint.write_manifest = sealed
    else:  # renamed into place, older checkpoints not yet pruned
        prune = checkpoint.prune

        def renamed(run_dir, keep_last, written):
            if written.name == f"step_{step:08d}":
                _die()
            prune(run_dir, keep_last, written)

        checkpoint.prune = renamed


def worker(recipe_file: str, point: str, journal: str) -> int:
    from mmssl.cli import main

    _journal_saves(Path(journal))
    if point != "none":
        _plant(point)
    return main(["pretrain", recipe_file])


# ----------------------------------------------------------------------------- the harness


@dataclass
class Outcome:
    fault: str
    identical: bool
    lost: int
    note: str = ""


def _sha256(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def lost_files(run_dir: Path, spared: set[Path] = frozenset()) -> int:
    """Files of the journaled checkpoints that pruning keeps, missing or changed (but ``spared``)."""
    journal = run_dir.parent / JOURNAL
    if not journal.is_file():
        return 0
    entries = [json.loads(line) for line in journal.read_text().splitlines()][-KEEP_LAST:]
    lost = 0
    for entry in entries:
        for name, want in entry["files"].items():
            file = Path(entry["path"]) / name
            if file in spared:
                continue
            if not file.is_file() or file.stat().st_size != want["size"] or _sha256(file) != want["sha256"]:
                lost += 1
    return lost


def start(run_dir: Path, point: str, *extra: str) -> subprocess.CompletedProcess:
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    recipe_file = run_dir.parent / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump({**RECIPE, "output_dir": str(run_dir)}))
    return subprocess.run(
        [sys.executable, __file__, "--worker", str(recipe_file), point, str(run_dir.parent / JOURNAL), *extra],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def resume_and_compare(run_dir: Path, reference: dict, fault: str, lost: int, note: str = "") -> Outcome:
    import torch

    from mmssl.recipe import recipe_from_dict
    from mmssl.train.loop import pretrain
    from mmssl.weights import model_weights

    result = pretrain(recipe_from_dict(RECIPE, [f"output_dir={run_dir}"]), resume="auto")
    weights = model_weights(result.checkpoint)
    identical = weights.keys() == reference.keys() and all(torch.equal(weights[k], reference[k]) for k in reference)
    return Outcome(fault, identical and result.step == STEPS, lost, note)


def kill_fault(root: Path, point: str, reference: dict) -> Outcome:
    run_dir = root / point.replace(":", "-") / "run"
    done = start(run_dir, point)
    if done.returncode != -signal.SIGKILL:
        return Outcome(f"kill at {point}", False, 0, f"not killed (exit {done.returncode}): {done.stderr[-300:]}")
    return resume_and_compare(run_dir, reference, f"kill -9 at {point}", lost_files(run_dir))


def corrupt_fault(root: Path, reference: dict) -> Outcome:
    run_dir = root / "corrupt" / "run"
    start(run_dir, "forward:11")  # checkpoints 4 and 8 are written, then the kill
    newest = sorted((run_dir / "checkpoints").glob("step_*"))[-1] / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:1000])
    return resume_and_compare(run_dir, reference, f"corrupt {newest.parent.name}/model.safetensors",
                              lost_files(run_dir, spared={newest}))


def full_disk_fault(root: Path, reference: dict) -> Outcome:
    mount = root / "disk"
    mount.mkdir(parents=True)
    # room for the recipe, logs and one checkpoint (330 KiB), not two
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=500k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        return Outcome("full disk", False, 0, f"skipped: cannot mount a tmpfs ({made.stderr.strip()})")
    try:
        run_dir = mount / "run"
        done = start(run_dir, "none")
        failed = done.returncode == 2 and "full disk" in done.stderr
        lost = lost_files(run_dir)
        subprocess.run(["mount", "-o", "remount,size=20m", str(mount)], check=True)
        outcome = resume_and_compare(run_dir, reference, "full disk at the second checkpoint", lost)
        if not failed:
            outcome.identical, outcome.note = False, f"no clear error (exit {done.returncode})"
        return outcome
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def plan(points: int, seed: int, phases: tuple[str, ...] = SAVE_PHASES) -> list[str]:
    """``points`` distinct random kill points, then a kill in each of ``phases`` of a checkpoint write."""
    candidates = [f"{kind}:{step}" for kind in ("forward", "logged") for step in range(1, STEPS + 1)]
    kills = random.Random(seed).sample(candidates, min(points, len(candidates)))
    return kills + [f"save:8:{phase}" for phase in phases]


def run_all(points: int, seed: int, root: Path, phases: tuple[str, ...] = SAVE_PHASES) -> list[Outcome]:
    import torch

    from mmssl.recipe import recipe_from_dict
    from mmssl.train.loop import pretrain
    from mmssl.weights import model_weights

    torch.set_num_threads(1)
    reference_run = pretrain(recipe_from_dict(RECIPE, [f"output_dir={root / 'reference'}"]))
    reference = model_weights(reference_run.checkpoint)
    outcomes = [kill_fault(root, point, reference) for point in plan(points, seed, phases)]
    outcomes.append(corrupt_fault(root, reference))
    outcomes.append(full_disk_fault(root, reference))
    return outcomes


def report(outcomes: list[Outcome]) -> str:
    lines = [f"{'fault':<44} {'bit-identical':<14} files lost"]
    lines += [f"{o.fault:<44} {'yes' if o.identical else 'NO':<14} {o.lost}  {o.note}".rstrip() for o in outcomes]
    ran = [o for o in outcomes if not o.note.startswith("skipped")]
    lines.append(f"resumed to bit-identical weights: {sum(o.identical for o in ran)} of {len(ran)} runs; "
                 f"files lost: {sum(o.lost for o in outcomes)}"
                 + (f"; skipped: {len(outcomes) - len(ran)}" if len(ran) < len(outcomes) else ""))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=20, help="random kill points")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small", action="store_true", help="one point of each kind (for the test suite)")
    parser.add_argument("--out", type=Path, default=None, help="where to keep the runs (default: a temp dir)")
    parser.add_argument("--worker", nargs=3, metavar=("RECIPE", "POINT", "JOURNAL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(*args.worker)
    points, phases = (1, SAVE_PHASES[:1]) if args.small else (args.points, SAVE_PHASES)
    with tempfile.TemporaryDirectory(prefix="mmssl-faults-") as tmp:
        outcomes = run_all(points, args.seed, args.out or Path(tmp), phases)
    print(report(outcomes))
    return 0 if all(o.identical and not o.lost for o in outcomes if not o.note.startswith("skipped")) else 1


if __name__ == "__main__":
    sys.exit(main())
