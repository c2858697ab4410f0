"""Property-based tests of the recipe loader: whatever the input, the only failure is a
RecipeError (never a TypeError, KeyError or AttributeError from deep inside)."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmssl.recipe import RecipeError, load_recipe, parse_override, recipe_from_dict

SECTIONS = ["task", "data", "model", "train", "eval", "hub", "name", "seed", "output_dir"]
FIELDS = ["name", "lr", "batch_size", "max_steps", "epochs", "source", "columns", "image", "size",
          "preset", "config", "mask_ratio", "on_nan", "on_bad_example", "betas", "protocols",
          "resume", "push", "data_files", "text", "audio", "x"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["mae", "mlm", "cosine", "skip", "3e-4"]))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), inner, max_size=3)),
    max_leaves=12,
)
recipes = st.one_of(
    values,
    st.fixed_dictionaries(
        {"task": st.one_of(st.just({"name": "mae"}), st.dictionaries(st.sampled_from(FIELDS), values, max_size=3))},
        optional={s: values for s in SECTIONS if s != "task"},
    ),
)
override_text = st.one_of(
    st.text(max_size=30),
    st.builds(lambda k, v: f"{k}={v}",
              st.lists(st.sampled_from(SECTIONS + FIELDS), min_size=1, max_size=3).map(".".join),
              st.one_of(st.text(max_size=10), st.sampled_from(["[1, 2", "{a: 1}", "1e-3", "null", "- x"]))),
)
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow
@FAST
@given(data=recipes, overrides=st.lists(override_text, max_size=3))
def test_recipe_from_dict_fails_only_with_recipe_error(data, overrides):
    try:
        recipe_from_dict(data, overrides, source="fuzz.yaml")
    except RecipeError as err:
        assert str(err)


@FAST
@given(text=st.text(max_size=60))
def test_parse_override_fails_only_with_recipe_error(text):
    try:
        key, _ = parse_override(text)
    except RecipeError as err:
        assert repr(text) in str(err)
    else:
        assert key and all(key.split("."))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.text(max_size=80), values.map(lambda v: yaml.safe_dump(v))))
def test_load_recipe_fails_only_with_recipe_error(tmp_path, content):
    path = tmp_path / "recipe.yaml"
    path.write_text(content)
    try:
        load_recipe(path)
    except RecipeError as err:
        assert str(path) in str(err)


@pytest.mark.parametrize("override, expected", [
    ("train.lr=fast", "train.lr: expected a number, got 'fast'"),
    ("train.batch_sise=8", "did you mean 'batch_size'?"),
    ("train.on_nan=skp", "did you mean 'skip'?"),
    ("train.max_steps=2.5", "train.max_steps: expected an integer, got 2.5"),
    ("data.on_bad_example=ignore", "data.on_bad_example: expected one of 'raise', 'skip'"),
    ("task.name=maee", "task.name"),
    ("task.mask_ratio=1.5", "task.mask_ratio: must be in [0, 1), got 1.5"),
    ("train=3", "train: expected a mapping (TrainConfig), got 3"),
    ("train.lr", "expected KEY.PATH=VALUE"),
    ("seed.x=1", "seed: expected an integer, got {'x': 1}"),
])
def test_each_wrong_field_says_what_to_fix(override, expected):
    with pytest.raises(RecipeError) as info:
        recipe_from_dict({"task": {"name": "mae"}, "data": {}}, [override], source="r.yaml")
    assert expected in str(info.value)
