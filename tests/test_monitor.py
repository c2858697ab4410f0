"""The online monitor: representation health numbers, and a run that logs them."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mmssl.cli import main
from mmssl.eval.monitor import (
    COLLAPSE_STD,
    plot_monitor,
    rankme,
    read_monitor,
    representation_health,
)
from mmssl.recipe import RecipeError, recipe_from_dict

MONITOR_KEYS = {"monitor/knn_top1", "monitor/rankme", "monitor/feature_std", "monitor/collapse"}


def test_a_collapsed_embedding_has_rank_one_and_raises_the_alarm():
    generator = torch.Generator().manual_seed(0)
    collapsed = torch.ones(200, 32) + 1e-4 * torch.randn(200, 32, generator=generator)
    health = representation_health(collapsed)
    assert health["monitor/rankme"] < 1.1
    assert health["monitor/feature_std"] < COLLAPSE_STD and health["monitor/collapse"] == 1.0


def test_a_spread_embedding_has_full_rank_and_no_alarm():
    spread = torch.randn(500, 32, generator=torch.Generator().manual_seed(0))
    health = representation_health(spread)
    assert 28 < health["monitor/rankme"] <= 32
    assert 0.9 < health["monitor/feature_std"] < 1.1 and health["monitor/collapse"] == 0.0
    # a rank-4 embedding has effective rank at most 4
    assert rankme(spread[:, :4] @ torch.randn(4, 32, generator=torch.Generator().manual_seed(1))) <= 4.0


def test_a_narrow_cone_is_no_collapse_until_its_spread_drops_tenfold():
    # rows 20 * (1, ..., 1) + noise: L2-normalised they spread 1/20 of a full sphere, as
    # mean-pooled transformer features do at random init; kNN still separates them
    cone = 20 * torch.ones(300, 32) + torch.randn(300, 32, generator=torch.Generator().manual_seed(0))
    first = representation_health(cone)
    assert 0.03 < first["monitor/feature_std"] < 0.08 and first["monitor/collapse"] == 0.0
    later = representation_health(cone, first_std=first["monitor/feature_std"])
    assert later["monitor/collapse"] == 0.0
    assert representation_health(cone, first_std=20 * first["monitor/feature_std"])["monitor/collapse"] == 1.0


def test_monitor_every_must_not_be_negative():
    with pytest.raises(RecipeError, match="eval.monitor_every: must be at least 0"):
        recipe_from_dict({"task": {"name": "mae"}, "data": {"source": "sklearn_digits"}}, ["eval.monitor_every=-1"])


@pytest.mark.slow
def test_a_run_logs_the_monitor_to_metrics_and_tensorboard(tmp_path):
    run_dir = tmp_path / "run"
    recipe = {
        "name": "monitored", "output_dir": str(run_dir), "task": {"name": "mae"},
        "model": {"preset": "nano", "config": {"patch_size": 4, "num_hidden_layers": 1}},
        "data": {"source": "sklearn_digits", "image": {"size": 16, "horizontal_flip": False}},
        "train": {"batch_size": 16, "max_steps": 5, "log_every": 10, "save_every": 0, "progress": False},
        "eval": {"protocols": ["knn"], "label_fractions": [1.0], "max_train_examples": 100,
                 "max_test_examples": 50, "monitor_every": 2, "monitor_examples": 100},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["pretrain", str(path)]) == 0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    monitored = {r["step"]: r for r in records if MONITOR_KEYS <= set(r)}
    assert set(monitored) == {2, 4, 5}  # every 2 steps, and the last step
    for record in monitored.values():
        assert 0.0 <= record["monitor/knn_top1"] <= 1.0 and "loss" in record
        assert 1.0 <= record["monitor/rankme"] <= 64
    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("monitor/knn_top1")] == [2, 4, 5]
    assert [r["step"] for r in read_monitor(run_dir / "metrics.jsonl")] == [2, 4, 5]
    plot_monitor(run_dir / "metrics.jsonl", tmp_path / "monitor.png")
    assert (tmp_path / "monitor.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
