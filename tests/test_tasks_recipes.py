"""Each SSL recipe runs end to end through the CLI for two steps on the shared data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmssl.cli import main

ROOT = Path(__file__).resolve().parents[1]

RECIPES = ["data2vec_vision_cifar10", "data2vec_text_agnews", "data2vec_audio_fsdd",
           "data2vec2_vision_cifar10", "data2vec2_text_agnews", "data2vec2_audio_fsdd",
           "simclr_cifar10", "byol_cifar10", "dino_cifar10", "simclr_fsdd", "simclr_agnews",
           "simclr_words_agnews", "simclr_logmel_fsdd", "simclr_logmel_allclips_fsdd"]


@pytest.mark.slow
@pytest.mark.parametrize("name", RECIPES)
def test_recipe_runs_end_to_end(name, shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # recipes name ../shared/data
    out = tmp_path / name
    code = main(["pretrain", f"recipes/{name}.yaml", "train.max_steps=2", "train.batch_size=8",
                 "train.log_every=1", "train.progress=false", "data.max_examples=64",
                 "data.text.vocab_size=500", "eval=null", f"output_dir={out}"])
    assert code == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["loss"] > 0 for r in rows)
    assert (out / "checkpoints" / "step_00000002").is_dir()


@pytest.mark.slow
def test_clip_from_ssl_towers_recipe_chain(shared_data, tmp_path, monkeypatch):
    """mae_mnist and wav2vec2_fsdd runs, then clip_av_mnist_ssl starting its towers from them."""
    from mmssl.weights import load_run

    monkeypatch.chdir(ROOT)
    short = ["train.max_steps=2", "train.batch_size=8", "train.progress=false", "data.max_examples=64"]
    runs = {name: tmp_path / name for name in ("mae_mnist", "wav2vec2_fsdd")}
    for name, out in runs.items():
        assert main(["pretrain", f"recipes/{name}.yaml", *short, "eval=null", f"output_dir={out}"]) == 0
    out = tmp_path / "clip"
    assert main(["pretrain", "recipes/clip_av_mnist_ssl.yaml", *short, "train.epochs=null",
                 f"task.towers.vision.init_from={runs['mae_mnist']}",
                 f"task.towers.audio.init_from={runs['wav2vec2_fsdd']}", "task.towers.vision.freeze=true",
                 "eval.max_test_examples=40", f"output_dir={out}"]) == 0
    report = json.loads((out / "eval" / "report.json").read_text())
    assert set(report["alignment"]) == {"pretrained", "random_init"}
    # the locked vision tower is MAE's encoder, weight for weight, after training
    _, mae = load_run(runs["mae_mnist"])
    _, clip = load_run(out)
    mae_vit, clip_vit = mae.backbone, clip.towers["vision"].model
    for name in ("embeddings.patch_embeddings.projection.weight", "layernorm.weight"):
        assert torch.equal(mae_vit.get_parameter(name), clip_vit.get_parameter(name)), name


@pytest.mark.slow
def test_clip_flickr8k_runs_as_shipped_and_retrieval_prints_a_table(shared_data, tmp_path, monkeypatch, capsys):
    """No tokenizer to train first: the recipe learns one from the caption lists."""
    monkeypatch.chdir(ROOT)
    out = tmp_path / "clip"
    assert main(["pretrain", "recipes/clip_flickr8k.yaml", "train.max_steps=2", "train.epochs=null",
                 "train.batch_size=8", "train.progress=false", "data.max_examples=32",
                 f"output_dir={out}"]) == 0
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    capsys.readouterr()
    assert main(["retrieval", str(out), "--max-examples", "20"]) == 0
    printed = capsys.readouterr().out
    assert "| retrieval | R@1 | R@5 | R@10 | chance R@1 |" in printed
    rows = [line for line in printed.splitlines() if line.startswith(("| vision to text", "| text to vision"))]
    assert len(rows) == 2
    assert all(0.0 <= float(cell) <= 1.0 for row in rows for cell in row.strip("|").split("|")[1:])
    assert not printed.lstrip().startswith("{")


#: recipes on the registry's other encoders (``model.backbone``)
BACKBONE_RECIPES = ["simclr_resnet_cifar10", "byol_resnet_cifar10", "dino_resnet_cifar10",
                    "simclr_ast_fsdd", "byol_ast_fsdd", "dino_ast_fsdd", "simclr_logmel_fsdd"]


@pytest.mark.slow
@pytest.mark.parametrize("name", BACKBONE_RECIPES)
def test_backbone_recipe_runs_and_exports_to_automodel(name, shared_data, tmp_path, monkeypatch):
    from transformers import AutoModel

    from mmssl.hub import export
    from mmssl.weights import load_run

    monkeypatch.chdir(ROOT)
    out = tmp_path / name
    assert main(["pretrain", f"recipes/{name}.yaml", "train.max_steps=2", "train.batch_size=8",
                 "train.progress=false", "data.max_examples=64", "eval=null", f"output_dir={out}"]) == 0
    folder = export(out, tmp_path / "export")
    recipe, task = load_run(out)
    encoder = AutoModel.from_pretrained(folder / "encoder")
    assert type(encoder).__name__ == type(task.backbone).__name__
    assert type(encoder).__name__ == {"resnet": "ResNetModel", "ast": "ASTModel",
                                      "logmel_resnet": "ResNetModel"}[recipe.model.backbone]
    for key, value in task.backbone.state_dict().items():
        assert torch.equal(encoder.state_dict()[key], value), key
