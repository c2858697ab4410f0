"""Evaluation edge cases that used to give a number that meant nothing: a probe swept on an
empty validation split, kNN without neighbours, the training split scored as the test."""

from __future__ import annotations

import pytest
import torch

from mmssl.data.sources import DataError
from mmssl.eval.knn import knn_classify
from mmssl.eval.linear import linear_probe
from mmssl.eval.runner import eval_data_configs
from mmssl.eval.subsets import train_val_split
from mmssl.recipe import EvalConfig, recipe_from_dict


def separable(n_per_class: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat_interleave(n_per_class)
    x = torch.nn.functional.one_hot(y, 3).float() * 4 + 0.1 * torch.randn(len(y), 3, generator=generator)
    return x, y


def test_one_example_per_class_leaves_no_validation_and_the_sweep_refuses():
    x, y = separable(1)
    fit, val = train_val_split(y.numpy(), 0.1)
    assert len(val) == 0 and len(fit) == 3
    empty = (x[:0], y[:0])
    with pytest.raises(ValueError, match="validation split is empty .* one value each"):
        linear_probe((x, y), empty, separable(5, seed=1), 3, lrs=(1e-2, 1e-1), weight_decays=(0.0,), epochs=20)


def test_a_single_grid_point_needs_no_validation():
    x, y = separable(1)
    result = linear_probe((x, y), (x[:0], y[:0]), separable(5, seed=1), 3, lrs=(1e-1,), weight_decays=(0.0,),
                          epochs=50)
    assert result.val_top1 is None and result.lr == 1e-1
    assert result.top1 == 1.0  # three well-separated points are enough here


def test_knn_without_training_examples_is_an_error_not_a_perfect_score():
    test_x, test_y = torch.randn(4, 3), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="kNN: no training examples"):
        knn_classify(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), test_x, test_y, 3)
    with pytest.raises(ValueError, match="linear probe: no training examples"):
        linear_probe((torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)), separable(2), separable(2), 3)


@pytest.mark.parametrize("data, eval_section", [
    ({"source": "parquet", "data_files": {"train": "a.parquet", "test": "b.parquet"}}, {"test_split": "train"}),
    ({"source": "parquet", "data_files": {"train": "a.parquet", "test": "a.parquet"}}, {}),
    ({"source": "sklearn_digits"}, {"test_split": "train"}),
])
def test_scoring_on_the_training_data_is_refused(data, eval_section):
    recipe = recipe_from_dict({"task": {"name": "mae"}, "data": data, "eval": eval_section})
    with pytest.raises(DataError, match="eval.test_split: .* is the data the probes train on"):
        eval_data_configs(recipe, recipe.eval)


def test_a_held_out_split_is_accepted():
    recipe = recipe_from_dict({"task": {"name": "mae"}, "data": {"source": "sklearn_digits"}})
    train, test = eval_data_configs(recipe, EvalConfig())
    assert (train.split, test.split) == ("train", "test")
