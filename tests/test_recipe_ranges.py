"""Every numeric field of every recipe dataclass (sections, each task's config, the views) has
its range checked at load: an out-of-range value is a RecipeError naming the file and the key,
never a ZeroDivisionError or a silent zero-step run later; an in-range one never fails with
anything but a RecipeError (cross-field checks)."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
import warnings
from typing import Annotated, Any, Union

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmssl.recipe import (
    Range,
    Recipe,
    RecipeError,
    TaskConfig,
    TrainConfig,
    load_recipe,
    recipe_from_dict,
)
from mmssl.registry import TASKS, load_all
from mmssl.train.optim import build_scheduler


@dataclasses.dataclass(frozen=True)
class Leaf:
    task: str
    path: tuple[str, ...]
    kind: type
    range: Range | None
    in_list: bool

    @property
    def key(self) -> str:
        return ".".join(self.path) + ("[0]" if self.in_list else "")


def _unwrap(tp: Any) -> tuple[Any, Range | None, bool]:
    """(base type, its Range, inside a list) of a field type; Optionals are looked through."""
    in_list = False
    while True:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (Union, types.UnionType):
            tp = next(a for a in args if a is not type(None))
        elif origin is list:
            tp, in_list = args[0], True
        elif origin is Annotated:
            bound = next((m for m in args[1:] if isinstance(m, Range)), None)
            return args[0], bound, in_list
        else:
            return tp, None, in_list


def _leaves(cls: type, task: str, path: tuple[str, ...], depth: int = 0) -> list[Leaf]:
    found = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls, include_extras=True)[f.name]
        base, bound, in_list = _unwrap(tp)
        if base is TaskConfig or (isinstance(base, type) and issubclass(base, TaskConfig)):
            continue  # each task's config is walked on its own, below
        if dataclasses.is_dataclass(base) and depth < 3:
            found += _leaves(base, task, (*path, f.name), depth + 1)
        elif base in (int, float):
            found.append(Leaf(task, (*path, f.name), base, bound, in_list))
    return found


def all_leaves() -> list[Leaf]:
    load_all()
    leaves = _leaves(Recipe, "mae", ())
    for name in TASKS.names():
        config = TASKS.get(name).config
        if config is not None:
            leaves += _leaves(config, name, ("task",))
    return leaves


LEAVES = all_leaves()


def test_the_walk_sees_every_section_and_task():
    keys = {leaf.key for leaf in LEAVES}
    assert {"train.log_every", "train.max_steps", "train.epochs", "train.betas[0]", "seed",
            "data.image.size", "data.audio.max_seconds", "eval.knn_k", "eval.data.max_bad_fraction",
            "task.mask_ratio", "task.audio_views.n_fft", "task.pair_with.shuffle_buffer"} <= keys
    assert {leaf.task for leaf in LEAVES} >= {"mae", "mlm", "wav2vec2", "simclr", "byol", "dino",
                                              "data2vec", "clip"}


def test_every_numeric_field_declares_its_range():
    missing = sorted({f"{leaf.task}: {leaf.key}" for leaf in LEAVES if leaf.range is None})
    assert not missing, f"numeric recipe fields without a Range: {missing}"


def _outside(leaf: Leaf) -> st.SearchStrategy:
    bound = leaf.range
    options = []
    if leaf.kind is int:
        if bound.low > -math.inf:
            options.append(st.integers(max_value=int(bound.low) - (0 if bound.low_open else 1), min_value=-10**12))
        if bound.high < math.inf:
            options.append(st.integers(min_value=int(bound.high) + (0 if bound.high_open else 1), max_value=10**12))
        return st.one_of(options)
    options.append(st.sampled_from([math.nan, math.inf, -math.inf]))
    if bound.low > -math.inf:
        options.append(st.floats(max_value=bound.low, exclude_max=not bound.low_open, min_value=-1e12))
    if bound.high < math.inf:
        options.append(st.floats(min_value=bound.high, exclude_min=not bound.high_open, max_value=1e12))
    return st.one_of(options)


def _inside(leaf: Leaf) -> st.SearchStrategy:
    bound = leaf.range
    low, high = max(bound.low, -1e6), min(bound.high, 1e6)
    if leaf.kind is int:
        return st.integers(int(low) + int(bound.low_open), int(high) - int(bound.high_open))
    return st.floats(low, high, exclude_min=bound.low_open, exclude_max=bound.high_open)


def _write(tmp_path, leaf: Leaf, value: Any):
    """A recipe file of ``leaf``'s task with ``value`` at ``leaf``'s key."""
    tree: dict = {"task": {"name": leaf.task}, "data": {}}
    node = tree
    for key in leaf.path[:-1]:
        node = node.setdefault(key, {})
    node[leaf.path[-1]] = [value] if leaf.in_list else value
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


RANGED = [leaf for leaf in LEAVES if leaf.range is not None]


CHECKED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@CHECKED
@given(data=st.data())
def test_an_out_of_range_value_is_a_recipe_error_naming_file_and_key(tmp_path, data):
    leaf = data.draw(st.sampled_from(RANGED))
    value = data.draw(_outside(leaf))
    path = _write(tmp_path, leaf, value)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert f"{path}: {leaf.key}: must be " in str(info.value)


@CHECKED
@given(data=st.data())
def test_an_in_range_value_loads_or_is_a_recipe_error(tmp_path, data):
    leaf = data.draw(st.sampled_from(RANGED))
    value = data.draw(_inside(leaf))
    path = _write(tmp_path, leaf, value)
    try:
        recipe = load_recipe(path)
    except RecipeError as err:
        assert str(path) in str(err)
    else:
        node: Any = recipe
        for key in leaf.path:
            node = getattr(node, key)
        assert (node[0] if leaf.in_list else node) == value


@pytest.mark.parametrize("override, expected", [
    ("train.log_every=0", "train.log_every: must be at least 1, got 0"),
    ("train.max_steps=-5", "train.max_steps: must be at least 1, got -5"),
    ("train.max_steps=0", "train.max_steps: must be at least 1, got 0"),
    ("train.epochs=0", "train.epochs: must be at least 1, got 0"),
    ("train.lr=.nan", "train.lr: must be above 0, got nan"),
    ("data.max_bad_fraction=1.5", "data.max_bad_fraction: must be in [0, 1], got 1.5"),
])
def test_the_fuzzed_failures_are_recipe_errors(override, expected):
    with pytest.raises(RecipeError) as info:
        recipe_from_dict({"task": {"name": "mae"}, "data": {}}, [override], source="r.yaml")
    assert f"r.yaml: {expected}" in str(info.value)


def test_betas_and_crop_scale_need_two_ordered_values():
    with pytest.raises(RecipeError, match=r"train: betas must be two numbers"):
        recipe_from_dict({"task": {"name": "mae"}, "data": {}}, ["train.betas=[0.9]"], source="r.yaml")
    with pytest.raises(RecipeError, match=r"data.image: crop_scale must be \[low, high\]"):
        recipe_from_dict({"task": {"name": "mae"}, "data": {}}, ["data.image.crop_scale=[0.9, 0.2]"])


def test_a_warmup_as_long_as_the_run_warns():
    cfg = TrainConfig(warmup_steps=10)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
    with pytest.warns(UserWarning, match=r"train.warmup_steps=10 is not below the run's 5 steps"):
        build_scheduler(optimizer, cfg, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_scheduler(optimizer, TrainConfig(warmup_steps=4), 5)
