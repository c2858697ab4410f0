"""Faults during training: kill -9 and resume (at exact points, including each phase of a
checkpoint write; bench/fault_injection.py), a full disk during a checkpoint write, NaN and
inf losses, and Hub tokens kept out of everything a run writes or prints."""

from __future__ import annotations

import errno
import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_resume import RECIPE as RESUME_RECIPE

from mmssl.errors import CheckpointError
from mmssl.recipe import recipe_from_dict
from mmssl.tasks.mae import MAETask
from mmssl.train.loop import TrainingDivergedError, pretrain
from mmssl.weights.checkpoints import checkpoint_dirs, latest_checkpoint, model_weights

TINY_MAE = {
    "name": "faults",
    "task": {"name": "mae"},
    "model": RESUME_RECIPE["model"],
    "data": {"source": "sklearn_digits", "max_examples": 48, "image": {"size": 16}},
    "train": {"batch_size": 16, "max_steps": 16, "save_every": 4, "keep_last": 3, "cpu": True,
              "lr": 1e-3, "warmup_steps": 2, "log_every": 1, "progress": False},
}
REPO = Path(__file__).resolve().parents[1]


def recipe(out: Path, *overrides: str):
    return recipe_from_dict(TINY_MAE, [f"output_dir={out}", *overrides])


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = model_weights(a), model_weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on a shared 2-core machine run fastest (and steadiest) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full") / "run"
    return pretrain(recipe(out)).checkpoint


def _fault_injection():
    """bench/fault_injection.py: its worker kills ``mmssl pretrain`` at exact points."""
    spec = importlib.util.spec_from_file_location("fault_injection", REPO / "bench" / "fault_injection.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    assert module.RECIPE == TINY_MAE  # so its runs compare with the ``uninterrupted`` fixture
    return module


@pytest.mark.slow
@pytest.mark.parametrize(("point", "latest"), [
    ("forward:6", 4),        # inside a step
    ("save:8:files", 4),     # a checkpoint's files half written
    ("save:8:sealed", 4),    # manifest written, not yet renamed
    ("save:8:renamed", 8),   # renamed into place, not yet pruned
])
def test_kill_9_then_resume_gives_the_uninterrupted_weights(tmp_path, uninterrupted, point, latest):
    faults = _fault_injection()
    run_dir = tmp_path / "run"
    done = faults.start(run_dir, point)
    assert done.returncode == -signal.SIGKILL, f"the run ended before the kill: {done.stderr[-2000:]}"
    assert checkpoint_dirs(run_dir)[-1].name == f"step_{latest:08d}"
    assert faults.lost_files(run_dir) == 0
    resumed = pretrain(recipe(run_dir), resume="auto")
    assert resumed.step == 16
    assert not list((run_dir / "checkpoints").glob(".*"))
    assert_same_weights(uninterrupted, resumed.checkpoint)


@pytest.mark.slow
def test_fault_injection_small_mode_resumes_every_run_and_loses_nothing(tmp_path):
    done = subprocess.run([sys.executable, "bench/fault_injection.py", "--small", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    total = done.stdout.strip().splitlines()[-1]
    assert total.startswith("resumed to bit-identical weights: ") and "files lost: 0" in total
    ran, of = (int(n) for n in total.split(": ")[1].split(" runs")[0].split(" of "))
    assert ran == of >= 3


def _fail_second_save(monkeypatch, error: Exception) -> None:
    """Make the second ``save_state`` write part of its files and then fail."""
    from accelerate import Accelerator

    original, calls = Accelerator.save_state, []

    def save_state(self, output_dir=None, **kwargs):
        calls.append(output_dir)
        if len(calls) == 2:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / "model.safetensors").write_bytes(b"half a file")
            raise error
        return original(self, output_dir, **kwargs)

    monkeypatch.setattr(Accelerator, "save_state", save_state)


@pytest.mark.parametrize("error", [
    OSError(errno.ENOSPC, "No space left on device"),
    # what torch.save raises when the disk fills under it
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 65664 vs 65552"),
])
def test_a_failed_save_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, error):
    run_dir = tmp_path / "run"
    _fail_second_save(monkeypatch, error)
    with pytest.raises(CheckpointError) as info:
        pretrain(recipe(run_dir, "train.max_steps=9"))
    message = str(info.value)
    assert "checkpoint for step 8" in message
    assert f"last good checkpoint is {run_dir / 'checkpoints' / 'step_00000004'}" in message
    assert "full disk" in message
    assert [p.name for p in checkpoint_dirs(run_dir)] == ["step_00000004"]
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))
    monkeypatch.undo()
    assert pretrain(recipe(run_dir, "train.max_steps=9"), resume="auto").step == 9


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 500 KiB tmpfs: room for one checkpoint of the tiny model (330 KiB), not two."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=500k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_real_full_disk_fails_the_save_clearly_and_keeps_the_last_checkpoint(tiny_tmpfs):
    run_dir = tiny_tmpfs / "run"
    with pytest.raises(CheckpointError, match=r"step 8 .*full disk.*last good checkpoint is .*step_00000004"):
        pretrain(recipe(run_dir, "train.max_steps=9", "train.keep_last=1"))
    assert [p.name for p in checkpoint_dirs(run_dir)] == ["step_00000004"]
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))
    weights = model_weights(latest_checkpoint(run_dir))
    assert all(torch.isfinite(w).all() for w in weights.values())


def _poison_steps(monkeypatch, calls_to_poison: set[int], value: float = float("nan")) -> None:
    """Make MAE's loss ``value`` on the given forward calls (1-based)."""
    original, calls = MAETask.forward, [0]

    def forward(self, batch):
        calls[0] += 1
        out = original(self, batch)
        if calls[0] in calls_to_poison:
            out.loss = out.loss * value
        return out

    monkeypatch.setattr(MAETask, "forward", forward)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_on_nan_stop_names_the_step_and_the_last_good_checkpoint(tmp_path, monkeypatch, value):
    _poison_steps(monkeypatch, {6}, value)
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingDivergedError) as info:
        pretrain(recipe(run_dir, "train.max_steps=9"))
    last = run_dir / "checkpoints" / "step_00000004"
    assert "non-finite loss" in str(info.value) and "at step 6" in str(info.value)
    assert f"last good checkpoint: {last}" in str(info.value)
    assert checkpoint_dirs(run_dir) == [last]
    assert all(torch.isfinite(w).all() for w in model_weights(last).values())


def test_on_nan_stop_before_any_checkpoint_says_none(tmp_path, monkeypatch):
    _poison_steps(monkeypatch, {2})
    with pytest.raises(TrainingDivergedError, match="at step 2; last good checkpoint: none"):
        pretrain(recipe(tmp_path / "run", "train.max_steps=9"))
    assert checkpoint_dirs(tmp_path / "run") == []


def test_on_nan_skip_skips_the_batch_and_keeps_training(tmp_path, monkeypatch):
    _poison_steps(monkeypatch, {3, 7})
    result = pretrain(recipe(tmp_path / "run", "train.max_steps=8", "train.on_nan=skip"))
    assert result.step == 8 and result.nan_skips == 2
    weights = model_weights(result.checkpoint)
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_on_nan_skip_stops_once_max_nan_skips_is_used_up(tmp_path, monkeypatch):
    _poison_steps(monkeypatch, {3, 4, 5})
    with pytest.raises(TrainingDivergedError, match="at step 3;"):
        pretrain(recipe(tmp_path / "run", "train.max_steps=8", "train.on_nan=skip",
                        "train.max_nan_skips=2"))
