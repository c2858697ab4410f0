"""The ``mmssl`` command end to end: quickstart, list, and user errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mmssl.cli import main

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"


def mmssl(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmssl.cli", *args], cwd=cwd, capture_output=True, text=True
    )


@pytest.mark.slow
def test_quickstart_runs_and_reports_its_run_directory(tmp_path):
    out = tmp_path / "qs"
    result = mmssl("pretrain", str(QUICKSTART), "train.max_steps=6", "train.save_every=4",
                   "train.log_every=2", f"output_dir={out}")
    assert result.returncode == 0, result.stderr
    assert f"Run directory: {out}" in result.stdout
    for name in ("recipe.yaml", "environment.json", "metrics.jsonl", "tensorboard", "checkpoints"):
        assert (out / name).exists(), name
        assert name in result.stdout
    saved = yaml.safe_load((out / "recipe.yaml").read_text())
    assert saved["train"]["max_steps"] == 6 and saved["task"]["name"] == "mae"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [2, 4, 6]
    assert all(row["loss"] > 0 and row["samples_per_s"] > 0 for row in rows)
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert checkpoints == ["step_00000004", "step_00000006"]
    final = out / "checkpoints" / "step_00000006"
    assert {"model.safetensors", "optimizer.bin", "scheduler.bin", "trainer_state.json"} <= {
        p.name for p in final.iterdir()
    }
    env = json.loads((out / "environment.json").read_text())
    assert env["torch"] and env["num_processes"] == 1


def test_list_shows_every_registry(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for heading in ("tasks:", "backbones:", "data sources:", "heads:", "modalities:"):
        assert heading in text
    assert "mae" in text and "resnet" in text and "sklearn_digits" in text and "  audio " in text


def test_bad_override_is_one_clear_line_and_exit_code_2(capsys):
    assert main(["pretrain", str(QUICKSTART), "train.lr=fast"]) == 2
    err = capsys.readouterr().err
    assert "train.lr: expected a number, got 'fast'" in err
    assert "Traceback" not in err


def test_missing_recipe_file(capsys):
    assert main(["pretrain", "nope.yaml"]) == 2
    assert "nope.yaml: no such file or shipped recipe" in capsys.readouterr().err


def test_missing_column_is_reported_before_training(tmp_path, capsys):
    code = main(["pretrain", str(QUICKSTART), "data.columns.image=picture", f"output_dir={tmp_path}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "data.columns.image: no column 'picture'" in err
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_streaming_pretraining_runs(tmp_path):
    out = tmp_path / "stream"
    code = main(["pretrain", str(QUICKSTART), "data.streaming=true", "train.max_steps=2",
                 "train.log_every=1", f"output_dir={out}"])
    assert code == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2]
    assert (out / "checkpoints" / "step_00000002" / "model.safetensors").is_file()


def test_overrides_may_follow_options(capsys):
    assert main(["pretrain", str(QUICKSTART), "--resume", "some/ckpt", "train.lr=fast"]) == 2
    assert "train.lr: expected a number, got 'fast'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pretrain", str(QUICKSTART), "--resume", "some/ckpt", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
