"""Dual-encoder export of CLIP pairs without a transformers class ([vision, audio], [audio, text]):
each tower loads with AutoModel, and mmssl loads the folder back to the same embeddings."""

from __future__ import annotations

import json

import pytest
import torch
from test_clip_task import SMALL_W2V, av_mnist

from mmssl.cli import main
from mmssl.data.sources import load_data
from mmssl.modalities.tokenizer import train_tokenizer
from mmssl.recipe import recipe_from_dict
from mmssl.tasks.base import build_task
from mmssl.train.loop import pretrain
from mmssl.weights import init_weights, load_dual_encoder, load_run

SMALL_BERT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
PROMPTS = ["the spoken digit {name}", "someone says {name}"]


def _train_and_export(recipe, out):
    pretrain(recipe)
    assert main(["export", str(recipe.run_dir), str(out)]) == 0
    return recipe.run_dir, out


@pytest.fixture(scope="module")
def vision_audio(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("clip-va")
    tree = av_mnist(shared_data, root, projection="mlp", projection_batch_norm=True)
    tree["data"]["max_examples"] = 32
    tree["train"]["max_steps"] = 2
    return _train_and_export(recipe_from_dict(tree), root / "export")


@pytest.fixture(scope="module")
def audio_text(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("clip-at")
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    train_tokenizer((p.format(name=n) for n in names for p in PROMPTS), root / "tok", vocab_size=60)
    recipe = recipe_from_dict({
        "output_dir": str(root / "run"),
        "task": {"name": "clip", "modalities": ["audio", "text"], "embed_dim": 16, "prompts": PROMPTS,
                 "towers": {"audio": {"config": SMALL_W2V}, "text": {"config": SMALL_BERT, "pooling": "mean"}}},
        "data": {"data_files": {"train": str(shared_data / "fsdd/train.parquet"),
                                "test": str(shared_data / "fsdd/test.parquet")},
                 "max_examples": 32, "audio": {"max_seconds": 1.0},
                 "text": {"tokenizer": str(root / "tok"), "max_length": 16}},
        "train": {"batch_size": 16, "max_steps": 2, "lr": 1e-3, "save_every": 0, "progress": False, "cpu": True},
    })
    return _train_and_export(recipe, root / "export")


def _test_batch(task, n=6):
    data = load_data(task.recipe.data, required=task.required_columns).select(range(n))
    data = task.prepare_dataset(data)
    return task.collate([task.preprocess(data[i], train=False) for i in range(n)])


@pytest.mark.slow
@pytest.mark.parametrize("pair", ["vision_audio", "audio_text"])
def test_export_loads_back_to_the_same_embeddings(pair, request):
    run_dir, out = request.getfixturevalue(pair)
    _, ours = load_run(run_dir)
    spec = json.loads((out / "mmssl_dual_encoder.json").read_text())
    assert spec["modalities"] == list(ours.modalities)
    assert spec["embed_dim"] == 16 and spec["pooling"] == {m: ours.towers[m].pooling for m in ours.modalities}
    loaded = load_dual_encoder(out)
    batch = _test_batch(ours)
    with torch.no_grad():
        for modality in ours.modalities:
            theirs = loaded.encode(modality, loaded.inputs(batch, modality))
            mine = ours.encode(modality, ours.inputs(batch, modality))
            assert theirs.shape == (6, 16)
            torch.testing.assert_close(theirs, mine, atol=1e-6, rtol=0)
    assert torch.equal(loaded.logit_scale, ours.logit_scale)
    assert (out / "README.md").read_text().count('subfolder="') == 4


@pytest.mark.slow
@pytest.mark.parametrize("pair", ["vision_audio", "audio_text"])
def test_each_tower_folder_loads_with_auto_classes(pair, request):
    from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoModel, AutoTokenizer

    run_dir, out = request.getfixturevalue(pair)
    _, ours = load_run(run_dir)
    processors = {"vision": AutoImageProcessor, "audio": AutoFeatureExtractor, "text": AutoTokenizer}
    for modality in ours.modalities:
        model = AutoModel.from_pretrained(out / modality)
        assert type(model) is type(ours.towers[modality].model)
        theirs = model.state_dict()
        assert all(torch.equal(theirs[k], v) for k, v in ours.towers[modality].model.state_dict().items())
        processors[modality].from_pretrained(out / modality)
    assert not (out / "config.json").exists()


@pytest.mark.slow
def test_towers_init_from_and_retrieval_read_the_export(vision_audio, shared_data, tmp_path):
    from mmssl.eval.alignment import evaluate_run

    _, out = vision_audio
    loaded = load_dual_encoder(out)
    tree = av_mnist(shared_data, tmp_path)
    tree["task"]["towers"] = {m: {"init_from": str(out), "pooling": loaded.towers[m].pooling}
                              for m in ("vision", "audio")}
    fresh = build_task(recipe_from_dict(tree))
    for modality in ("vision", "audio"):
        state = loaded.towers[modality].model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in fresh.towers[modality].model.state_dict().items())
    whole = av_mnist(shared_data, tmp_path, projection="mlp", projection_batch_norm=True)
    whole["model"] = {"init_from": str(out)}
    task = build_task(recipe_from_dict(whole))
    init_weights(task, str(out))
    assert all(torch.equal(task.state_dict()[k], v) for k, v in loaded.state_dict().items())
    report, path = evaluate_run(out, max_examples=100)
    assert path == out / "eval" / "alignment.json"
    assert report["pairing"] == "classes" and 0.0 <= report["retrieval"]["vision_to_audio/R@1"] <= 1.0
