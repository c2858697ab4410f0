"""No command destroys a run (issue #15): export targets, the run lock, resuming from an older
or a corrupt checkpoint, resuming a finished run, and what ``--resume`` takes as its path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_reliability_faults import TINY_MAE, assert_same_weights, one_thread, recipe  # noqa: F401

from mmssl.cli import main
from mmssl.errors import CheckpointError
from mmssl.hub.output_dir import check_out_dir
from mmssl.train.loop import pretrain
from mmssl.train.run_lock import LOCK_FILE, RunLockedError, run_lock
from mmssl.weights.checkpoints import checkpoint_dirs, latest_checkpoint, model_weights

REPO = Path(__file__).resolve().parents[1]


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def steps(run_dir: Path) -> list[int]:
    return [int(p.name.split("_")[1]) for p in checkpoint_dirs(run_dir)]


@pytest.fixture(scope="module")
def run12(tmp_path_factory) -> Path:
    """A finished 12-step run with checkpoints at steps 4, 8 and 12 (copy it before changing it)."""
    run_dir = tmp_path_factory.mktemp("run12") / "run"
    pretrain(recipe(run_dir, "train.max_steps=12"))
    assert steps(run_dir) == [4, 8, 12]
    return run_dir


@pytest.fixture
def run_copy(run12, tmp_path) -> Path:
    shutil.copytree(run12, tmp_path / "run")
    return tmp_path / "run"


# ----------------------------------------------------------------------------- export targets


@pytest.mark.parametrize("where", ["run", "parent", "inside"])
def test_export_overwrite_never_touches_the_run(run_copy, where, capsys):
    (run_copy.parent / "unrelated.txt").write_text("mine")
    before = files_of(run_copy.parent)
    out = {"run": run_copy, "parent": run_copy.parent, "inside": run_copy / "export"}[where]
    assert main(["export", str(run_copy), str(out), "--overwrite"]) == 2
    assert "cannot be, contain or lie inside the run" in capsys.readouterr().err
    assert files_of(run_copy.parent) == before


@pytest.mark.parametrize("where", ["cwd", "home"])
def test_export_overwrite_refuses_the_working_directory_and_home(run12, tmp_path, monkeypatch, where, capsys):
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home if where == "cwd" else tmp_path)
    assert main(["export", str(run12), "." if where == "cwd" else str(home), "--overwrite"]) == 2
    assert "an export cannot be or contain" in capsys.readouterr().err
    assert (home / "notes.txt").read_text() == "mine"


def test_export_refuses_the_root_folder(run12):
    # checked without exporting: before the fix, ``export RUN / --overwrite`` ran rmtree("/")
    with pytest.raises(FileExistsError, match="an export cannot be or contain the working directory"):
        check_out_dir(Path("/"), run12, overwrite=True, marker="mmssl_recipe.yaml")


def test_export_overwrite_replaces_an_earlier_export_and_nothing_else(run12, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("1,2")
    assert main(["export", str(run12), str(other), "--overwrite"]) == 2
    assert "is not an mmssl export" in capsys.readouterr().err
    assert (other / "data.csv").read_text() == "1,2"

    out = tmp_path / "export"
    assert main(["export", str(run12), str(out)]) == 0
    (out / "stale.txt").write_text("from the earlier export")
    assert main(["export", str(run12), str(out), "--overwrite"]) == 0
    assert (out / "config.json").is_file() and not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "other"]  # no .tmp-/.old- left


# ----------------------------------------------------------------------------- the run lock


def test_a_second_writer_is_refused_and_told_the_holders_pid(tmp_path, run12):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from mmssl.train.run_lock import run_lock\n"
         f"with run_lock({str(run12)!r}, 'pretrain'):\n"
         "    print('locked', flush=True); sys.stdin.read()"],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"in use by pid {holder.pid} "):
            pretrain(recipe(run12, "train.max_steps=16"), resume="latest")
        from mmssl.eval.runner import evaluate_run

        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            evaluate_run(run12)
    finally:
        holder.communicate("")
    with run_lock(run12, "test"):  # released when its holder exits
        pass
    assert steps(run12) == [4, 8, 12]


@pytest.mark.slow
def test_two_pretrain_processes_on_one_folder_the_second_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump({**TINY_MAE, "output_dir": str(run_dir)}))
    first = subprocess.Popen([sys.executable, "-m", "mmssl.cli", "pretrain", str(recipe_file),
                              "train.max_steps=40"], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lock = run_dir / LOCK_FILE
    # the first run trains for many seconds after taking the lock; coarse waiting is enough
    while first.poll() is None and not (lock.is_file() and "pid" in lock.read_text()):
        time.sleep(0.1)
    assert main(["pretrain", str(recipe_file), "train.max_steps=40"]) == 2
    assert f"in use by pid {first.pid}" in capsys.readouterr().err
    _, err = first.communicate()
    assert first.returncode == 0, err.decode()[-2000:]
    logged = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, 41))


def test_a_folder_with_metrics_but_no_checkpoint_is_refused_unless_overwritten(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    with pytest.raises(CheckpointError, match="logs of an earlier run .*--overwrite"):
        pretrain(recipe(run_dir, "train.max_steps=2"))
    with pytest.raises(CheckpointError, match="holds no checkpoint to resume from"):
        pretrain(recipe(run_dir, "train.max_steps=2"), resume="latest")
    assert pretrain(recipe(run_dir, "train.max_steps=2"), overwrite=True).step == 2
    (aside,) = (run_dir / "abandoned").iterdir()
    assert (aside / "metrics.jsonl").read_text() == '{"step": 1, "loss": 1.0}\n'
    assert [json.loads(r)["step"] for r in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2]


# ----------------------------------------------------------------------------- --resume arguments


def test_resume_flag_leaves_a_following_override_alone(tmp_path, capsys):
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump({**TINY_MAE, "output_dir": str(tmp_path / "a")}))
    target = tmp_path / "b"
    assert main(["pretrain", str(recipe_file), "--resume", f"output_dir={target}"]) == 2
    err = capsys.readouterr().err
    assert f"{target} holds no checkpoint to resume from" in err  # the override was applied
    assert main(["pretrain", str(recipe_file), "--resume", str(tmp_path / "nowhere")]) == 2
    assert f"no checkpoint at '{tmp_path / 'nowhere'}'" in capsys.readouterr().err
    assert not (tmp_path / "a" / "checkpoints").exists() and not target.joinpath("checkpoints").exists()


# ----------------------------------------------------------------------------- resuming


@pytest.mark.parametrize("keep_last", [1, 2])
def test_resume_from_an_older_checkpoint_moves_the_later_ones_aside(run_copy, keep_last):
    older = run_copy / "checkpoints" / "step_00000008"
    result = pretrain(recipe(run_copy, "train.max_steps=11", f"train.keep_last={keep_last}"),
                      resume=str(older))
    assert result.step == 11 and result.checkpoint.is_dir()
    assert latest_checkpoint(run_copy) == result.checkpoint
    assert steps(run_copy) == [8, 11][-keep_last:]
    (aside,) = (run_copy / "abandoned").iterdir()
    assert (aside / "step_00000012" / "model.safetensors").is_file()
    logged = [json.loads(r)["step"] for r in (run_copy / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, 12))


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.bin"])
def test_a_truncated_latest_checkpoint_falls_back_to_the_newest_that_verifies(run12, run_copy, name, capsys):
    broken = run_copy / "checkpoints" / "step_00000012" / name
    broken.write_bytes(broken.read_bytes()[:100])
    result = pretrain(recipe(run_copy, "train.max_steps=12"), resume="latest")
    printed = capsys.readouterr().out
    assert f"{broken}: 100 bytes" in printed and "resuming from" in printed and "step_00000008" in printed
    assert result.step == 12
    assert_same_weights(run12 / "checkpoints" / "step_00000012", result.checkpoint)
    assert len(list((run_copy / "abandoned").glob("*/step_00000012"))) == 1


def test_when_no_checkpoint_verifies_the_error_names_each_file(run_copy):
    broken = []
    for ckpt in checkpoint_dirs(run_copy):
        (ckpt / "model.safetensors").write_bytes(b"")
        broken.append(ckpt / "model.safetensors")
    with pytest.raises(CheckpointError) as info:
        pretrain(recipe(run_copy, "train.max_steps=16"), resume="latest")
    assert all(str(f) in str(info.value) for f in broken)
    with pytest.raises(CheckpointError, match="step_00000004 does not verify"):
        pretrain(recipe(run_copy, "train.max_steps=16"), resume=str(checkpoint_dirs(run_copy)[0]))


def test_a_corrupt_checkpoint_without_manifest_is_a_clear_error(run_copy):
    latest = latest_checkpoint(run_copy)
    (latest / "manifest.json").unlink()  # as written before manifests existed
    (latest / "model.safetensors").write_bytes(b"\0" * 10)
    with pytest.raises(CheckpointError, match=f"{latest} could not be loaded"):
        pretrain(recipe(run_copy, "train.max_steps=16"), resume="latest")


def test_resuming_a_finished_run_changes_nothing_and_clears_partial_saves(run_copy):
    stale = run_copy / "checkpoints" / ".tmp-step_00000016"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    final = latest_checkpoint(run_copy)
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in [final, *final.iterdir()]}
    result = pretrain(recipe(run_copy, "train.max_steps=12"), resume="latest")
    assert result.step == 12 and result.checkpoint == final
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in [final, *final.iterdir()]} == before
    assert not stale.exists()


def test_every_checkpoint_has_a_manifest_of_its_files(run12):
    for ckpt in checkpoint_dirs(run12):
        listed = json.loads((ckpt / "manifest.json").read_text())["files"]
        on_disk = {str(p.relative_to(ckpt)): p.stat().st_size
                   for p in ckpt.rglob("*") if p.is_file() and p.name != "manifest.json"}
        assert {name: f["size"] for name, f in listed.items()} == on_disk
        assert "trainer_state.json" in listed and "model.safetensors" in listed


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="Accelerate makes no GradScaler on the CPU: fp16 there has no scaler state")
def test_fp16_grad_scaler_state_survives_a_resume(run_copy, monkeypatch):
    from accelerate import Accelerator

    run_dir = run_copy.parent / "fp16"
    pretrain(recipe(run_dir, "train.max_steps=8", "train.cpu=false", "train.precision=fp16"))
    saved = torch.load(run_dir / "checkpoints" / "step_00000004" / "scaler.pt", weights_only=True)
    assert saved["_growth_tracker"] > 0  # a fresh scaler's is 0
    loaded, load_state = [], Accelerator.load_state

    def recording(self, *args, **kwargs):
        load_state(self, *args, **kwargs)
        loaded.append(self.scaler.state_dict())

    monkeypatch.setattr(Accelerator, "load_state", recording)
    pretrain(recipe(run_dir, "train.max_steps=6", "train.cpu=false", "train.precision=fp16"),
             resume=str(run_dir / "checkpoints" / "step_00000004"))
    assert loaded == [saved]


def test_export_and_eval_skip_a_corrupt_latest_checkpoint_saying_so(run_copy, tmp_path):
    from mmssl.weights import find_checkpoint

    broken = run_copy / "checkpoints" / "step_00000012" / "model.safetensors"
    broken.write_bytes(broken.read_bytes()[:100])
    with pytest.warns(UserWarning, match="step_00000012 of .* not verify .*; using step_00000008"):
        assert find_checkpoint(run_copy).name == "step_00000008"
    with pytest.raises(CheckpointError, match="step_00000012 does not verify"):
        find_checkpoint(broken.parent)
    with pytest.warns(UserWarning, match="using step_00000008"):
        assert main(["export", str(run_copy), str(tmp_path / "export")]) == 0
    (broken.parent / "manifest.json").unlink()  # as before manifests: a clear error all the same
    with pytest.raises(CheckpointError, match=f"{broken} could not be read"):
        model_weights(broken.parent)


def test_moving_aside_twice_in_one_second_keeps_both(tmp_path):
    from mmssl.train.resume import _move_aside

    for content in ("first", "second"):
        (tmp_path / "checkpoints").mkdir()
        (tmp_path / "checkpoints" / "note").write_text(content)
        _move_aside(tmp_path, [tmp_path / "checkpoints"], None)
    kept = sorted((p / "checkpoints" / "note").read_text() for p in (tmp_path / "abandoned").iterdir())
    assert kept == ["first", "second"]


def test_eval_of_a_missing_run_makes_no_folder(tmp_path):
    from mmssl.eval.runner import evaluate_run

    with pytest.raises(CheckpointError, match="no recipe.yaml"):
        evaluate_run(tmp_path / "typo")
    assert not (tmp_path / "typo").exists()
