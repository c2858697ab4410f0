"""`mmssl eval` of a clip run: retrieval and zero-shot scores of the trained and the untrained
model in the same report.json / report.md as the probes, and in the model card's model-index."""

from __future__ import annotations

import json

import pytest
from test_clip_task import av_mnist

from mmssl.cli import main
from mmssl.eval.alignment import evaluate_alignment
from mmssl.eval.runner import random_init_task
from mmssl.recipe import recipe_from_dict
from mmssl.train.loop import pretrain
from mmssl.weights import load_run


@pytest.mark.slow
def test_clip_eval_writes_alignment_beside_the_probes(shared_data, tmp_path):
    tree = av_mnist(shared_data, tmp_path, projection_batch_norm=True)
    tree["data"]["max_examples"] = 32
    tree["train"]["max_steps"] = 2
    tree["eval"] = {"protocols": ["knn", "alignment"], "label_fractions": [1.0], "knn_k": 5,
                    "max_train_examples": 60, "max_test_examples": 100}
    recipe = recipe_from_dict(tree)
    pretrain(recipe)
    assert main(["eval", str(recipe.run_dir)]) == 0

    report = json.loads((recipe.run_dir / "eval" / "report.json").read_text())
    assert set(report["results"]["pretrained"]) == {"knn"}
    recipe, trained = load_run(recipe.run_dir)
    assert report["alignment"]["pretrained"] == evaluate_alignment(trained, "test", 100)
    assert report["alignment"]["random_init"] == evaluate_alignment(random_init_task(recipe), "test", 100)
    assert report["alignment"]["pretrained"] != report["alignment"]["random_init"]
    scores = report["alignment"]["pretrained"]
    assert set(scores["retrieval"]) >= {f"{d}/R@{k}" for d in ("vision_to_audio", "audio_to_vision") for k in (1, 5, 10)}
    assert scores["zero_shot"]["vision_by_audio_prototypes"]["chance"] == pytest.approx(0.1)

    markdown = (recipe.run_dir / "eval" / "report.md").read_text()
    r1 = scores["retrieval"]["vision_to_audio/R@1"]
    floor = report["alignment"]["random_init"]["retrieval"]["vision_to_audio/R@1"]
    assert f"| retrieval vision to audio | R@1 | {r1:.4f} | {floor:.4f} |" in markdown
    assert "| knn | 100% |" in markdown

    assert main(["export", str(recipe.run_dir), str(tmp_path / "export")]) == 0
    card = (tmp_path / "export" / "README.md").read_text()
    assert "type: recall_at_1" in card and f"value: {round(r1, 4)}" in card
    assert "retrieval audio to vision recall_at_10" in card


def test_alignment_protocol_refuses_a_non_clip_run(tmp_path):
    from hub_helpers import train_tiny_mae

    from mmssl.eval.runner import evaluate_run, resolve_eval_config

    run_dir = train_tiny_mae(tmp_path / "run")
    recipe, _ = load_run(run_dir)
    with pytest.raises(ValueError, match="alignment scores clip runs"):
        evaluate_run(run_dir, resolve_eval_config(recipe, ["protocols=[alignment]"]))
