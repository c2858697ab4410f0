"""``model.init_from`` a transformers checkpoint of a registered architecture: the recipe
takes its architecture (whatever its preset says), the task adds its pretext head, the
weights arrive exactly, EMA teachers start from them, and the run reloads without the source."""

from __future__ import annotations

import shutil

import pytest
import torch
from test_tokenizer import corpus
from transformers import (
    BertConfig,
    BertModel,
    ModernBertConfig,
    ModernBertModel,
    ResNetConfig,
    ResNetModel,
    ViTConfig,
    ViTModel,
    Wav2Vec2Config,
    Wav2Vec2Model,
)

from mmssl.backbones.checkpoint import adopt_checkpoint
from mmssl.errors import CheckpointError
from mmssl.modalities.tokenizer import train_tokenizer
from mmssl.recipe import recipe_from_dict
from mmssl.tasks.base import build_task
from mmssl.weights import init_weights, load_run

DIGITS = {"source": "sklearn_digits", "image": {"size": 16, "channels": 1, "mean": [0.5], "std": [0.5]}}
HEADS = {"simclr": {"projection_dim": 16, "projection_hidden_dim": 32},
         "byol": {"projection_dim": 16, "hidden_dim": 32}, "mlm": {}}


def tokenizer_folder(folder):
    train_tokenizer(corpus(), folder, vocab_size=120)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def save_source(kind: str, folder) -> torch.nn.Module:
    """A tiny randomly initialised transformers encoder saved as a user's checkpoint would be."""
    torch.manual_seed(7)
    if kind == "vit":
        model = ViTModel(ViTConfig(image_size=16, num_channels=1, patch_size=4, hidden_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=48), add_pooling_layer=False)
    elif kind == "resnet":
        model = ResNetModel(ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]))
    elif kind == "wav2vec2":
        model = Wav2Vec2Model(Wav2Vec2Config(conv_dim=(16, 16), conv_kernel=(10, 4), conv_stride=(5, 4),
                                             hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=48, num_conv_pos_embeddings=8,
                                             num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
                                             do_stable_layer_norm=True))
    else:
        tokenizer = tokenizer_folder(folder)
        ids = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
        if kind == "bert":
            model = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=48, **ids), add_pooling_layer=False)
        else:
            model = ModernBertModel(ModernBertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                     intermediate_size=48, cls_token_id=tokenizer.cls_token_id,
                                                     sep_token_id=tokenizer.sep_token_id, **ids))
    model.save_pretrained(folder)
    return model


CASES = {  # source kind -> (task, its modality fields, data, the backbone the recipe ends up naming)
    "vit": ("simclr", {"modality": "vision"}, DIGITS, "vit"),
    "resnet": ("byol", {"modality": "vision"}, DIGITS, "resnet"),
    "wav2vec2": ("simclr", {"modality": "audio"}, {"audio": {"max_seconds": 1.0}}, "wav2vec2"),
    "bert": ("mlm", {}, {"text": {"max_length": 32, "packing": False}}, "bert"),
    "modernbert": ("mlm", {}, {"text": {"max_length": 32, "packing": False}}, "modernbert"),
}


def continued(kind: str, folder, **model):
    task, fields, data, _ = CASES[kind]
    recipe = recipe_from_dict({"task": {"name": task, **HEADS[task], **fields}, "data": data,
                               "model": {"preset": "nano", "init_from": str(folder), **model}})
    adopt_checkpoint(recipe)  # what pretrain does before it builds the task
    built = build_task(recipe)
    init_weights(built, str(folder))
    return recipe, built


@pytest.mark.parametrize("kind", sorted(CASES))
def test_continued_pretraining_takes_the_checkpoint_and_adds_the_head(kind, tmp_path):
    source = save_source(kind, tmp_path / "source")
    recipe, task = continued(kind, tmp_path / "source")
    assert recipe.model.backbone == CASES[kind][3]
    assert type(task.backbone) is type(source)
    theirs = source.state_dict()
    assert task.backbone.state_dict().keys() == theirs.keys()
    for key, value in task.backbone.state_dict().items():
        assert torch.equal(value, theirs[key]), key
    head = task.lm_head if kind in ("bert", "modernbert") else task.projector if kind == "resnet" else task.projection
    assert sum(p.numel() for p in head.parameters()) > 0
    if kind in ("bert", "modernbert"):
        assert recipe.data.text.tokenizer == str(tmp_path / "source")


def test_the_teacher_starts_from_the_checkpoint(tmp_path):
    save_source("resnet", tmp_path / "source")
    _, task = continued("resnet", tmp_path / "source")
    for (name, theirs), ours in zip(task.encoder.state_dict().items(), task.target_encoder.state_dict().values()):
        assert torch.equal(theirs, ours), name


def test_a_backbone_that_reads_other_checkpoints_is_refused(tmp_path):
    save_source("vit", tmp_path / "source")
    with pytest.raises(CheckpointError, match="is a 'vit' checkpoint; model.backbone 'resnet' reads 'resnet'"):
        continued("vit", tmp_path / "source", backbone="resnet")


@pytest.mark.slow
def test_pretrain_continues_from_a_checkpoint_and_reloads_without_it(tmp_path):
    from mmssl.train.loop import pretrain

    source = save_source("resnet", tmp_path / "source")
    recipe = recipe_from_dict({
        "task": {"name": "byol", **HEADS["byol"]}, "data": DIGITS, "output_dir": str(tmp_path / "run"),
        "model": {"preset": "nano", "init_from": str(tmp_path / "source")},
        "train": {"batch_size": 8, "max_steps": 2, "progress": False, "cpu": True, "lr": 1e-9, "weight_decay": 0.0},
    })
    pretrain(recipe)
    shutil.rmtree(tmp_path / "source")
    reloaded, task = load_run(tmp_path / "run")
    assert reloaded.model.backbone == "resnet" and reloaded.model.config["hidden_sizes"] == [8, 16]
    for key, value in source.state_dict().items():  # lr 1e-9: still the checkpoint's weights
        if not key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            torch.testing.assert_close(task.backbone.state_dict()[key], value, atol=1e-6, rtol=0)


def test_dry_run_counts_the_checkpoint_architecture(tmp_path):
    from mmssl.train.dry_run import dry_run

    save_source("resnet", tmp_path / "source")
    _, task = continued("resnet", tmp_path / "source")
    recipe = recipe_from_dict({"task": {"name": "byol", **HEADS["byol"]}, "data": DIGITS,
                               "model": {"preset": "nano", "init_from": str(tmp_path / "source")},
                               "train": {"batch_size": 8, "max_steps": 1}})
    assert dry_run(recipe).parameters == sum(p.numel() for p in task.parameters())
