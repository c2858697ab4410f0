"""Model cards: Hub metadata, training facts and eval metrics read from the run directory."""

from __future__ import annotations

import json

import pytest
import yaml
from hub_helpers import train_tiny_mae
from huggingface_hub import ModelCard

from mmssl.hub.card import model_card
from mmssl.recipe import EvalConfig
from mmssl.weights import load_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run_dir = train_tiny_mae(tmp_path_factory.mktemp("hub-card") / "run",
                             hub={"repo_id": "someone/mae-digits", "license": "mit"})
    (run_dir / "eval").mkdir()
    scores = {"linear": {"1.0": {"top1": 0.875, "top5": 0.99, "num_labels": 449},
                         "0.1": {"top1": 0.5, "top5": None}},
              "knn": {"1.0": {"top1": 0.75, "top5": float("nan")}}}
    floor = {"linear": {"1.0": {"top1": 0.25, "top5": 0.6}, "0.1": {"top1": 0.2, "top5": 0.5}},
             "knn": {"1.0": {"top1": 0.3, "top5": 0.7}}}
    (run_dir / "eval" / "report.json").write_text(json.dumps({  # as mmssl eval writes it
        "task": "mae", "test_split": "test",
        "data": {"train": {"source": "parquet", "path": None,
                           "data_files": {"test": "../shared/data/mnist/test.parquet"}}, "test_split": "test"},
        "results": {"pretrained": scores, "random_init": floor,
                    "raw_input": {"knn": {"1.0": {"top1": 0.8, "top5": 0.9}}}},
    }))
    return run_dir


def test_card_has_hub_metadata_and_model_index(run_dir):
    recipe, task = load_run(run_dir)
    card = ModelCard(str(model_card(recipe, task, run_dir)))
    meta = card.data.to_dict()
    assert meta["library_name"] == "transformers"
    assert meta["license"] == "mit"
    assert meta["pipeline_tag"] == "image-feature-extraction"
    assert {"mmssl", "self-supervised-learning", "mae", "vision"} <= set(meta["tags"])
    assert "datasets" not in meta  # scikit-learn digits are not a Hub data set
    (entry,) = meta["model-index"]
    assert entry["name"] == "someone/mae-digits"
    metrics = {(m["name"], m["type"]): m["value"] for r in entry["results"] for m in r["metrics"]}
    assert metrics == {("linear accuracy", "accuracy"): 0.875,
                       ("linear top_5_accuracy", "top_5_accuracy"): 0.99,
                       ("linear (10% labels) accuracy", "accuracy"): 0.5, ("knn accuracy", "accuracy"): 0.75,
                       ("knn, raw input baseline accuracy", "accuracy"): 0.8,
                       ("knn, raw input baseline top_5_accuracy", "top_5_accuracy"): 0.9}
    assert {(r["dataset"]["name"], r["dataset"]["split"]) for r in entry["results"]} == {("mnist", "test")}


def test_card_body_has_training_facts_recipe_and_usage(run_dir):
    recipe, task = load_run(run_dir)
    text = card_text = str(model_card(recipe, task, run_dir))
    state = json.loads(next((run_dir / "checkpoints").iterdir()).joinpath("trainer_state.json").read_text())
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert f"- steps: {state['step']}" in text and state["step"] == 3
    assert f"- final loss: {last['loss']:.4f} (step 3)" in text
    assert "- hardware: 1 x" in text and "(cpu)" in text
    assert "| linear | accuracy | 0.8750 | 0.2500 |" in text
    assert "| knn, raw input baseline | accuracy | 0.8000 | - |" in text
    assert 'AutoModel.from_pretrained(repo, subfolder="encoder", add_pooling_layer=False)' in text
    assert 'pipeline("image-feature-extraction", model=repo, model_kwargs={"add_pooling_layer": False})' in text
    embedded = yaml.safe_load(card_text.split("```yaml\n")[1].split("```")[0])
    saved = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    assert embedded.pop("output_dir") == f".../{run_dir.parent.name}/{run_dir.name}"  # no local paths
    saved.pop("output_dir")
    assert embedded == saved
    assert str(run_dir.parent) not in text


def test_card_without_run_files_leaves_those_sections_out(run_dir, tmp_path):
    recipe, task = load_run(run_dir)
    text = str(model_card(recipe, task, tmp_path))
    assert "## Training" not in text and "## Evaluation" not in text
    assert "model-index" not in text and "## Recipe" in text


def test_hub_dataset_is_listed_in_metadata(run_dir):
    from dataclasses import replace

    recipe, task = load_run(run_dir)
    recipe = replace(recipe, data=replace(recipe.data, source="hub", path="uoft-cs/cifar10"))
    meta = ModelCard(str(model_card(recipe, task))).data.to_dict()
    assert meta["datasets"] == ["uoft-cs/cifar10"]


def _with_report(run_dir, tmp_path, **report):
    """A copy of the run whose eval report is ``report``."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "eval" / "report.json").write_text(json.dumps(report))
    return copy


@pytest.mark.parametrize(("tested", "subset"), [(200, True), (150, False)])
def test_a_test_subset_is_labelled_with_its_size(run_dir, tmp_path, tested, subset):
    from huggingface_hub.repocard_data import model_index_to_eval_results

    recipe, task = load_run(run_dir)
    copy = _with_report(run_dir, tmp_path, task="mae", sizes={"test": tested},
                        settings={"max_test_examples": 200, "test_split": "test"},
                        data={"train": {"source": "parquet", "data_files": {"test": "/data/mnist/test.parquet"}},
                              "test_split": "test"},
                        results={"pretrained": {"knn": {"1.0": {"top1": 0.75}}}, "random_init": {}})
    card = ModelCard(str(model_card(recipe, task, copy)))
    _, (result,) = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert result.dataset_split == "test" and result.metric_value == 0.75
    if subset:
        assert result.dataset_name == "mnist (200 examples of test)"
        assert result.dataset_args == {"max_examples": 200}
        assert "Scored on 200 examples of the `test` split, not all of it." in card.text
    else:
        assert result.dataset_name == "mnist" and result.dataset_args is None
        assert "Scored on" not in card.text
    assert "/data/mnist" not in card.text


def test_base_model_and_datasets_name_hub_ids(run_dir, tmp_path):
    from dataclasses import replace

    recipe, task = load_run(run_dir)
    hub_data = replace(recipe.data, source="hub", path="ylecun/mnist")
    recipe = replace(recipe, model=replace(recipe.model, init_from="someone/mae-base"),
                     data=replace(recipe.data, source="hub", path="uoft-cs/cifar10"),
                     eval=replace(recipe.eval or EvalConfig(), data=hub_data))
    meta = ModelCard(str(model_card(recipe, task))).data.to_dict()
    assert meta["base_model"] == ["someone/mae-base"]
    assert meta["datasets"] == ["uoft-cs/cifar10", "ylecun/mnist"]
    export = tmp_path / "export"  # an exported folder names the repository it was pushed to
    export.mkdir()
    (export / "mmssl_recipe.yaml").write_text(yaml.safe_dump({"hub": {"repo_id": "someone/pushed"}}))
    recipe = replace(recipe, model=replace(recipe.model, init_from=str(export)))
    card = model_card(recipe, task)
    assert ModelCard(str(card)).data.to_dict()["base_model"] == ["someone/pushed"]
    assert str(tmp_path) not in str(card) and "started from `someone/pushed`" in str(card)


def test_model_index_comes_from_the_report_that_eval_writes(run_dir, tmp_path):
    """The card reads report.json through EvalReport, the shape eval/report.py writes."""
    import shutil

    import torch
    from huggingface_hub.repocard_data import model_index_to_eval_results

    from mmssl.eval.report import EvalReport, write_report

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    report = {
        "run_dir": str(copy), "checkpoint": "step_3", "task": "mae", "num_classes": 2,
        "sizes": {"train": 90, "val": 10, "test": 40}, "skipped_test_examples": 0, "skipped_label_rows": 0,
        "data": {"train": {"source": "parquet", "path": None,
                           "data_files": {"train": "/data/digits/train.parquet"}}, "test_split": "test"},
        "settings": {"test_split": "test", "max_test_examples": 40, "pooling": "mean"},
        "results": {"pretrained": {"linear": {"0.1": {"top1": 0.6, "top5": 1.0}, "1.0": {"top1": 0.9, "top5": 1.0}}},
                    "random_init": {"linear": {"0.1": {"top1": 0.5, "top5": 1.0}, "1.0": {"top1": 0.55, "top5": 1.0}}}},
        "seconds": 1.5,
    }
    features = (torch.randn(8, 4), torch.arange(8) % 2)
    paths = write_report(report, copy / "eval", {"pretrained": features, "random_init": features})
    assert EvalReport.from_json(paths["json"]) == EvalReport.from_dict(report)
    recipe, task = load_run(copy)
    card = ModelCard(str(model_card(recipe, task, copy)))
    _, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert {(r.metric_name, r.metric_value) for r in results} == {
        ("linear (10% labels) accuracy", 0.6), ("linear (10% labels) top_5_accuracy", 1.0),
        ("linear accuracy", 0.9), ("linear top_5_accuracy", 1.0)}
    assert {(r.dataset_name, r.dataset_split, r.task_type) for r in results} == {
        ("digits (40 examples of test)", "test", "image-classification")}
    assert "| linear (10% labels) | accuracy | 0.6000 | 0.5000 |" in card.text
