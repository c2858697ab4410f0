"""Recipe loading: typed sections, errors that name the file, key and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mmssl.recipe import RecipeError, load_recipe, parse_override, recipe_from_dict, save_recipe
from mmssl.tasks.mae import MAEConfig

BASE = {
    "name": "t",
    "task": {"name": "mae", "mask_ratio": 0.6},
    "data": {"source": "sklearn_digits", "image": {"size": 16}},
    "train": {"batch_size": 8, "max_steps": 3},
}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_sections_are_typed_and_task_config_comes_from_registry(tmp_path):
    recipe = load_recipe(write(tmp_path, BASE))
    assert isinstance(recipe.task, MAEConfig)
    assert recipe.task.mask_ratio == 0.6
    assert recipe.data.image.size == 16
    assert recipe.train.max_steps == 3
    assert recipe.train.lr == pytest.approx(1.5e-4)  # default kept
    assert recipe.run_dir == Path("runs/t")


def test_unknown_key_names_file_path_and_suggestion(tmp_path):
    bad = {**BASE, "train": {"batch_sise": 8}}
    path = write(tmp_path, bad)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    message = str(err.value)
    assert str(path) in message
    assert "train.batch_sise" in message
    assert "did you mean 'batch_size'" in message


def test_unknown_task_field_is_checked_against_the_task_config(tmp_path):
    bad = {**BASE, "task": {"name": "mae", "mask_ration": 0.5}}
    with pytest.raises(RecipeError, match=r"task\.mask_ration: unknown key; did you mean 'mask_ratio'"):
        load_recipe(write(tmp_path, bad))


def test_unknown_task_name_suggests_a_registered_one(tmp_path):
    bad = {**BASE, "task": {"name": "maee"}}
    with pytest.raises(RecipeError, match=r"task\.name: unknown task 'maee'; did you mean 'mae'"):
        load_recipe(write(tmp_path, bad))


@pytest.mark.parametrize(
    ("section", "value", "expected"),
    [
        ({"train": {"batch_size": "eight"}}, "train.batch_size", "expected an integer, got 'eight'"),
        ({"train": {"max_steps": 2.5}}, "train.max_steps", "expected an integer"),
        ({"train": {"precision": "bf17"}}, "train.precision", "did you mean 'bf16'"),
        ({"train": {"progress": "yes"}}, "train.progress", "expected true or false"),
        ({"train": {"betas": 0.9}}, "train.betas", "expected a list"),
        ({"data": {"image": {"size": [32]}}}, "data.image.size", "expected an integer"),
    ],
)
def test_wrong_types_name_the_key_and_the_expected_type(tmp_path, section, value, expected):
    data = {**BASE, **{k: {**BASE.get(k, {}), **v} for k, v in section.items()}}
    with pytest.raises(RecipeError) as err:
        load_recipe(write(tmp_path, data))
    assert f"{value}: " in str(err.value)
    assert expected in str(err.value)


def test_missing_required_sections_are_reported(tmp_path):
    with pytest.raises(RecipeError, match=r"data: required field is missing"):
        load_recipe(write(tmp_path, {"task": {"name": "mae"}}))
    with pytest.raises(RecipeError, match=r"task\.name: required"):
        load_recipe(write(tmp_path, {"task": {}, "data": {}}))


def test_invalid_value_from_task_validation(tmp_path):
    with pytest.raises(RecipeError, match=r"task\.mask_ratio: must be in \[0, 1\), got 1.5"):
        load_recipe(write(tmp_path, {**BASE, "task": {"name": "mae", "mask_ratio": 1.5}}))


def test_overrides_are_parsed_and_validated_like_the_file(tmp_path):
    path = write(tmp_path, BASE)
    recipe = load_recipe(path, ["train.lr=3e-4", "task.mask_ratio=0.9", "data.columns.image=img"])
    assert recipe.train.lr == pytest.approx(3e-4)
    assert recipe.task.mask_ratio == pytest.approx(0.9)
    assert recipe.data.columns == {"image": "img"}
    with pytest.raises(RecipeError, match=r"train\.batch_size: expected an integer, got 'big'"):
        load_recipe(path, ["train.batch_size=big"])
    with pytest.raises(RecipeError, match=r"train\.lrr: unknown key; did you mean 'lr'"):
        load_recipe(path, ["train.lrr=0.1"])


@pytest.mark.parametrize("text", ["train.lr", "=3", "train..lr=1", ".lr=2"])
def test_malformed_overrides_explain_the_syntax(text):
    with pytest.raises(RecipeError, match="expected KEY.PATH=VALUE"):
        parse_override(text)


def test_override_through_a_scalar_is_an_error(tmp_path):
    with pytest.raises(RecipeError, match=r"train\.lr is 0\.001, not a mapping"):
        recipe_from_dict({**BASE, "train": {"lr": 1e-3}}, ["train.lr.x=1"], "r.yaml")


def test_scientific_notation_in_yaml_is_a_number(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(BASE) + "")
    text = path.read_text().replace("batch_size: 8", "batch_size: 8\n  lr: 5e-4")
    path.write_text(text)
    assert load_recipe(path).train.lr == pytest.approx(5e-4)


def test_saved_recipe_loads_back_identically(tmp_path):
    recipe = load_recipe(write(tmp_path, BASE), ["train.lr=2e-3"])
    save_recipe(recipe, tmp_path / "resolved.yaml")
    assert load_recipe(tmp_path / "resolved.yaml") == recipe


def test_misspelled_recipe_name_suggests_the_shipped_one():
    with pytest.raises(RecipeError, match="quickstrat: no such file or shipped recipe; did you mean 'quickstart'"):
        load_recipe("quickstrat")
    with pytest.raises(RecipeError, match="did you mean 'mae_mnist'"):
        load_recipe("recipes/mae_mnsit.yaml")


def test_unreadable_and_invalid_yaml_files(tmp_path):
    with pytest.raises(RecipeError, match="nope.yaml: no such file or shipped recipe"):
        load_recipe(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("task: [unclosed")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42")
    with pytest.raises(RecipeError, match="a recipe is a mapping"):
        load_recipe(scalar)


def test_every_shipped_recipe_validates():
    root = Path(__file__).resolve().parents[1] / "recipes"
    recipes = sorted(root.glob("*.yaml"))
    assert recipes, "no recipes shipped"
    for path in recipes:
        load_recipe(path)


def test_an_empty_eval_protocol_list_is_a_recipe_error():
    """It used to pass validation and end the run in a KeyError while writing the report."""
    with pytest.raises(RecipeError, match=r"^eval: protocols is empty: name at least one of linear, knn, finetune, alignment, or leave out"):
        recipe_from_dict({"task": {"name": "mae"}, "data": {}, "eval": {"protocols": []}})
