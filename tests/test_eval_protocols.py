"""Linear probe, kNN, label subsets and fine-tuning on toy data with known answers."""

from __future__ import annotations

import math

import datasets
import numpy as np
import pytest
import torch
from torch import nn

from mmssl.eval.finetune import finetune, finetune_epoch_count
from mmssl.eval.knn import knn_classify, knn_scores
from mmssl.eval.linear import linear_probe
from mmssl.eval.subsets import label_subsets, train_val_split
from mmssl.recipe import EvalConfig, TaskConfig, recipe_from_dict
from mmssl.tasks.base import PretextTask


def blobs(n_per_class: int, num_classes: int, dim: int, seed: int, spread: float = 0.3):
    g = torch.Generator().manual_seed(seed)
    centers = torch.eye(num_classes, dim) * 3.0
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    x = centers[y] + spread * torch.randn(len(y), dim, generator=g)
    return x, y


# --------------------------------------------------------------------------- subsets


def test_label_subsets_are_class_balanced_nested_and_seeded():
    labels = np.repeat(np.arange(5), [200, 300, 100, 400, 1000])
    subsets = label_subsets(labels, [0.01, 0.1, 1.0], seed=3)
    for fraction, idx in subsets.items():
        counts = np.bincount(labels[idx], minlength=5)
        expected = [max(1, math.ceil(fraction * n)) for n in (200, 300, 100, 400, 1000)]
        assert counts.tolist() == expected
        assert len(np.unique(idx)) == len(idx)
    assert set(subsets[0.01]) < set(subsets[0.1]) < set(subsets[1.0])
    assert len(subsets[1.0]) == len(labels)
    again = label_subsets(labels, [0.1], seed=3)[0.1]
    other = label_subsets(labels, [0.1], seed=4)[0.1]
    assert np.array_equal(again, subsets[0.1]) and not np.array_equal(other, subsets[0.1])


def test_train_val_split_is_stratified_and_disjoint():
    labels = np.repeat(np.arange(4), 50)
    train, val = train_val_split(labels, 0.2, seed=0)
    assert not set(train) & set(val)
    assert len(train) + len(val) == len(labels)
    assert np.bincount(labels[val]).tolist() == [10, 10, 10, 10]


def test_label_fraction_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="label fraction"):
        label_subsets([0, 1], [0.0])
    with pytest.raises(ValueError, match="label_fractions"):
        EvalConfig(label_fractions=[1.5])


# --------------------------------------------------------------------------- kNN


def test_knn_votes_match_hand_computation():
    # unit vectors at known angles; the query is at angle 0
    angles = torch.tensor([0.1, 0.2, 1.2, 3.0])
    train_x = torch.stack([angles.cos(), angles.sin()], dim=1) * torch.tensor([[2.0], [1.0], [5.0], [1.0]])
    train_y = torch.tensor([0, 1, 1, 2])
    query = torch.tensor([[3.0, 0.0]])
    scores = knn_scores(train_x, train_y, query, num_classes=3, k=3, temperature=0.5)
    cos = angles.cos()
    expected = torch.tensor([[(cos[0] / 0.5).exp(), (cos[1] / 0.5).exp() + (cos[2] / 0.5).exp(), 0.0]])
    torch.testing.assert_close(scores, expected)
    # class 1 wins with two neighbours although class 0 holds the nearest one
    result = knn_classify(train_x, train_y, query, torch.tensor([1]), num_classes=3, k=3, temperature=0.5)
    assert result == {"top1": 1.0, "top5": 1.0}
    # with k=1 only the nearest neighbour votes
    result = knn_classify(train_x, train_y, query, torch.tensor([1]), num_classes=3, k=1, temperature=0.5)
    assert result["top1"] == 0.0


def test_knn_separates_clusters():
    x, y = blobs(50, 4, 8, seed=0)
    tx, ty = blobs(20, 4, 8, seed=1)
    assert knn_classify(x, y, tx, ty, num_classes=4)["top1"] == 1.0


# --------------------------------------------------------------------------- linear probe


def test_linear_probe_is_accurate_on_separable_features():
    x, y = blobs(100, 5, 16, seed=0, spread=0.5)
    val = blobs(20, 5, 16, seed=1, spread=0.5)
    test = blobs(40, 5, 16, seed=2, spread=0.5)
    result = linear_probe((x, y), val, test, 5, lrs=(1e-2, 1e-1), weight_decays=(0.0,), epochs=20)
    assert result.top1 >= 0.99
    assert result.val_top1 >= 0.99
    assert result.lr in (1e-2, 1e-1)


def test_linear_probe_picks_the_grid_point_with_best_validation():
    x, y = blobs(100, 3, 8, seed=0, spread=1.5)
    val, test = blobs(30, 3, 8, seed=1, spread=1.5), blobs(30, 3, 8, seed=2, spread=1.5)
    # a learning rate of ~0 leaves the near-zero init: chance accuracy, never chosen
    result = linear_probe((x, y), val, test, 3, lrs=(1e-9, 1e-1), weight_decays=(0.0,), epochs=10)
    assert result.lr == 1e-1 and result.top1 > 0.8


# --------------------------------------------------------------------------- fine-tune


@pytest.fixture
def toy_task():
    class ToyTask(PretextTask):
        modalities = ("toy",)

        def __init__(self, recipe):
            super().__init__(recipe)
            self.encoder = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8))

        def preprocess(self, example, train=True):
            return {"x": torch.tensor(example["x"], dtype=torch.float32)}

        def collate(self, examples):
            return {"x": torch.stack([ex["x"] for ex in examples])}

        @property
        def backbone(self):
            return self.encoder

        def embed(self, batch, pooling="mean"):
            return self.encoder(batch["x"])

    recipe = recipe_from_dict({"task": {"name": "mae"}, "data": {}})
    recipe.task = TaskConfig(name="toy")
    torch.manual_seed(0)
    return ToyTask(recipe)


def toy_split(seed: int, n: int) -> datasets.Dataset:
    x, y = blobs(n, 3, 6, seed=seed, spread=0.5)
    return datasets.Dataset.from_dict({"x": x.tolist(), "label": y.tolist()})


def test_finetune_learns_and_leaves_the_task_untouched(toy_task):
    before = {k: v.clone() for k, v in toy_task.state_dict().items()}
    cfg = EvalConfig(finetune_epochs=6, finetune_batch_size=16, finetune_lr=3e-2)
    result = finetune(toy_task, toy_split(0, 40), toy_split(1, 20), "label", 3, cfg)
    assert result["top1"] >= 0.95
    for key, value in toy_task.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_finetune_trains_the_backbone_at_a_lower_rate(toy_task, monkeypatch):
    seen = {}
    real = torch.optim.AdamW

    def spy(groups, **kwargs):
        seen["lrs"] = [g["lr"] for g in groups]
        return real(groups, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", spy)
    cfg = EvalConfig(finetune_epochs=1, finetune_lr=1e-2, finetune_backbone_lr_scale=0.1)
    finetune(toy_task, toy_split(0, 10), toy_split(1, 5), "label", 3, cfg)
    assert seen["lrs"] == pytest.approx([1e-3, 1e-2])


@pytest.mark.parametrize("epochs, min_steps, batches, expected", [
    (3, 0, 1, 3),      # the default: epochs only
    (3, 200, 1, 200),  # 1% of the labels fits one batch: 200 epochs of one step
    (3, 200, 8, 25),
    (3, 200, 100, 3),  # enough steps already
])
def test_finetune_epoch_count_reaches_the_minimum_steps(epochs, min_steps, batches, expected):
    cfg = EvalConfig(finetune_epochs=epochs, finetune_min_steps=min_steps)
    assert finetune_epoch_count(cfg, batches) == expected


def test_finetune_takes_at_least_the_minimum_steps(toy_task, monkeypatch):
    steps = []
    real = torch.optim.AdamW.step

    def counted(self, *args, **kwargs):
        steps.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", counted)
    cfg = EvalConfig(finetune_epochs=1, finetune_batch_size=16, finetune_min_steps=7)
    finetune(toy_task, toy_split(0, 20), toy_split(1, 5), "label", 3, cfg)  # 2 batches per epoch
    assert len(steps) == 8
