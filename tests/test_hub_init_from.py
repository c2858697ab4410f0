"""``model.init_from`` an exported folder: the weights arrive exactly, mismatches are errors."""

from __future__ import annotations

import pytest
import torch
from hub_helpers import TINY_MAE, train_tiny_mae

from mmssl.errors import CheckpointError
from mmssl.hub import export
from mmssl.recipe import recipe_from_dict
from mmssl.tasks.base import build_task
from mmssl.weights import init_weights, is_pretrained_source, load_run


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub-init")
    run_dir = train_tiny_mae(root / "run")
    return run_dir, export(run_dir, root / "export")


def test_init_from_export_copies_every_weight(exported):
    run_dir, folder = exported
    _, trained = load_run(run_dir)
    torch.manual_seed(123)
    task = build_task(recipe_from_dict({**TINY_MAE, "model": {**TINY_MAE["model"], "init_from": str(folder)}}))
    before = {k: v.clone() for k, v in task.state_dict().items()}
    init_weights(task, task.recipe.model.init_from)
    after, expected = task.state_dict(), trained.state_dict()
    assert after.keys() == expected.keys()
    for key in expected:
        assert torch.equal(after[key], expected[key]), key
    assert any(not torch.equal(before[k], expected[k]) for k in expected)


def test_init_from_a_different_architecture_names_the_weights(exported):
    _, folder = exported
    model = {**TINY_MAE["model"], "config": {**TINY_MAE["model"]["config"], "hidden_size": 48}}
    task = build_task(recipe_from_dict({**TINY_MAE, "model": model}))
    with pytest.raises(CheckpointError, match="does not fit the recipe's model.*48"):
        init_weights(task, folder)


def test_init_from_the_encoder_folder_is_refused_with_the_model_types(exported):
    _, folder = exported
    task = build_task(recipe_from_dict(TINY_MAE))
    with pytest.raises(CheckpointError, match="'vit' model, this task trains 'vit_mae'"):
        init_weights(task, folder / "encoder")


def test_sources_are_told_apart(exported, tmp_path):
    run_dir, folder = exported
    assert is_pretrained_source(folder) and is_pretrained_source("someone/mae-digits")
    assert not is_pretrained_source(run_dir) and not is_pretrained_source(tmp_path)
    assert not is_pretrained_source("not-a-hub-id")


def test_init_from_refuses_a_task_whose_export_is_a_copy(exported):
    import copy

    _, folder = exported
    task = build_task(recipe_from_dict(TINY_MAE))
    task.export_model = lambda: copy.deepcopy(task.model)
    with pytest.raises(CheckpointError, match="copies of its weights"):
        init_weights(task, folder)


def test_init_from_a_hub_id_round_trips_through_push(exported, monkeypatch, tmp_path):
    from hub_helpers import FakeHub
    from huggingface_hub import constants

    from mmssl.hub import push

    run_dir, folder = exported
    _, trained = load_run(run_dir)
    with FakeHub("hf_token123") as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_TOKEN", "hf_token123")
        # huggingface_hub builds download URLs from the endpoint it read at import
        monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
        push(folder, "someone/mae-digits")
        task = build_task(recipe_from_dict({**TINY_MAE, "model": {**TINY_MAE["model"],
                                                                   "init_from": "someone/mae-digits"}}))
        init_weights(task, task.recipe.model.init_from)
    # the root is the plain encoder; MAE's pretraining model comes from pretraining/
    assert ("GET", "/someone/mae-digits/resolve/main/pretraining/model.safetensors") in hub.calls
    expected = trained.state_dict()
    for key, value in task.state_dict().items():
        assert torch.equal(value, expected[key]), key
