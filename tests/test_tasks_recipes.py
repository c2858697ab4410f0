"""Each SSL recipe runs end to end through the CLI for two steps on the shared data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmssl.cli import main

ROOT = Path(__file__).resolve().parents[1]

RECIPES = ["data2vec_vision_cifar10", "data2vec_text_agnews", "data2vec_audio_fsdd",
           "simclr_cifar10", "byol_cifar10", "dino_cifar10", "simclr_fsdd", "simclr_agnews"]


@pytest.mark.slow
@pytest.mark.parametrize("name", RECIPES)
def test_recipe_runs_end_to_end(name, shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # recipes name ../shared/data
    out = tmp_path / name
    code = main(["pretrain", f"recipes/{name}.yaml", "train.max_steps=2", "train.batch_size=8",
                 "train.log_every=1", "train.progress=false", "data.max_examples=64",
                 "data.text.vocab_size=500", f"output_dir={out}"])
    assert code == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["loss"] > 0 for r in rows)
    assert (out / "checkpoints" / "step_00000002").is_dir()
