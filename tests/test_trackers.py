"""``train.report_to``: accelerate's trackers get the flattened recipe and every logged scalar."""

from __future__ import annotations

import json

import pytest

from mmssl.recipe import RecipeError, recipe_from_dict
from mmssl.train.logging import build_trackers, flat_hyperparameters
from mmssl.train.loop import pretrain

RECIPE = {
    "name": "tracked",
    "task": {"name": "mae"},
    "model": {"preset": "nano", "config": {
        "patch_size": 4, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 64, "decoder_hidden_size": 32, "decoder_num_hidden_layers": 1,
        "decoder_num_attention_heads": 2, "decoder_intermediate_size": 64}},
    "data": {"source": "sklearn_digits", "max_examples": 32, "image": {"size": 16}},
    "train": {"batch_size": 16, "max_steps": 3, "save_every": 0, "lr": 1e-3, "log_every": 1,
              "progress": False},
}


def _tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.slow
def test_tensorboard_and_mlflow_get_hyperparameters_and_metrics(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed (pip install -e '.[dev]')")
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # a file store runs offline with mlflow-skinny; MLflow 3 asks for this opt-in to use one
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    out = tmp_path / "run"
    pretrain(recipe_from_dict(RECIPE, [f"output_dir={out}", "train.report_to=[tensorboard,mlflow]"]))
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in logged] == [1, 2, 3]

    scalars = _tensorboard_scalars(out / "tensorboard")
    assert [step for step, _ in scalars["loss"]] == [1, 2, 3]
    assert [v for _, v in scalars["loss"]] == pytest.approx([row["loss"] for row in logged])
    (hparams,) = (out / "tensorboard").glob("*/hparams.yml")
    assert "train.lr: 0.001" in hparams.read_text()

    client = mlflow.MlflowClient(tracking_uri=uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "tracked"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params["train.lr"] == "0.001" and run.data.params["task.name"] == "mae"
    assert run.data.params["train.report_to"] == '["tensorboard", "mlflow"]'
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == [1, 2, 3]
    assert [m.value for m in history] == pytest.approx([row["loss"] for row in logged])
    assert run.info.status == "FINISHED"


def test_report_to_none_writes_only_the_json_lines(tmp_path):
    out = tmp_path / "run"
    pretrain(recipe_from_dict(RECIPE, [f"output_dir={out}", "train.report_to=none", "train.max_steps=1"]))
    assert (out / "metrics.jsonl").is_file() and not (out / "tensorboard").exists()


def test_unknown_and_missing_trackers_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"unknown tracker 'tensorbord' \(known: aim, .*tensorboard"):
        build_trackers(["tensorbord"], tmp_path)
    monkeypatch.setattr("mmssl.train.logging.get_available_trackers", lambda: ["tensorboard"])
    with pytest.raises(ValueError, match="'mlflow' is not installed; pip install mlflow-skinny"):
        build_trackers("mlflow", tmp_path)
    assert [t.name for t in build_trackers("all", tmp_path)] == ["tensorboard"]
    with pytest.raises(RecipeError, match="train.report_to: expected str or list"):
        recipe_from_dict(RECIPE, ["train.report_to=3"])


def test_hyperparameters_are_flat_scalars():
    flat = flat_hyperparameters({"train": {"lr": 1e-3, "betas": [0.9, 0.95], "max_steps": None},
                                 "data": {"columns": {}, "image": {"size": 16}}, "name": "x"})
    assert flat == {"train.lr": 1e-3, "train.betas": "[0.9, 0.95]", "train.max_steps": "null",
                    "data.columns": "{}", "data.image.size": 16, "name": "x"}
