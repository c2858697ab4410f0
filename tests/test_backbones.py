"""The backbone registry: recipes pick encoders by ``model.backbone``, unsupported pairings
fail when the recipe loads, and every image and spectrogram encoder trains with the view
tasks and exports to a folder that ``AutoModel`` loads with the same features."""

from __future__ import annotations

import pytest
import torch
from test_views_audio_text import RATE, clips, corpus, fixed_batch_losses, texts, tone

from mmssl.cli import main
from mmssl.data.sources import load_data
from mmssl.hub.export import write_export
from mmssl.modalities.tokenizer import train_tokenizer
from mmssl.modalities.vision import decode_image
from mmssl.recipe import RecipeError, recipe_from_dict
from mmssl.registry import BACKBONES, load_all
from mmssl.tasks.base import build_task

HEADS = {
    "simclr": {"projection_dim": 16, "projection_hidden_dim": 32, "blur_prob": 0.0},
    "byol": {"projection_dim": 16, "hidden_dim": 32},
    "dino": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16, "num_local_crops": 2},
}
#: tiny configs: two stages of width 16/32 (ResNet's fixed stem makes 16 px images 4x4)
IMAGE = {
    "resnet": {"embedding_size": 16, "hidden_sizes": [16, 32], "depths": [1, 1]},
    "convnext": {"hidden_sizes": [16, 32], "depths": [1, 1], "patch_size": 2},
    "convnextv2": {"hidden_sizes": [16, 32], "depths": [1, 1], "patch_size": 2},
}
AUDIO = {
    "ast": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
    "logmel_resnet": {"embedding_size": 16, "hidden_sizes": [16, 32], "depths": [1, 1]},
}


def image_task(task: str, backbone: str, **fields):
    torch.manual_seed(0)
    return build_task(recipe_from_dict({
        "task": {"name": task, **HEADS[task], **fields},
        "model": {"backbone": backbone, "preset": "nano", "config": IMAGE[backbone]},
        "data": {"source": "sklearn_digits", "image": {"size": 16, "channels": 1, "mean": [0.5], "std": [0.5],
                                                      "crop_scale": [0.5, 1.0], "horizontal_flip": False}},
    }))


def audio_task(task: str, backbone: str, **fields):
    torch.manual_seed(0)
    return build_task(recipe_from_dict({
        "task": {"name": task, "modality": "audio", **HEADS[task],
                 "audio_views": {"crop_seconds": 0.25, "local_crop_seconds": 0.125}, **fields},
        "model": {"backbone": backbone, "preset": "nano", "config": AUDIO[backbone]},
        "data": {"audio": {"max_seconds": 0.5, "min_seconds": 0.1, "num_mel_bins": 32}},
    }))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(corpus(), out, vocab_size=120)
    return out


def modernbert_task(task: str, tokenizer: str, **fields):
    torch.manual_seed(0)
    heads = {**HEADS, "mlm": {"mask_prob": 0.3}, "data2vec": {"modality": "text", "top_k": 2, "mask_prob": 0.3}}
    return build_task(recipe_from_dict({
        "task": {"name": task, **heads[task], **fields},
        "model": {"backbone": "modernbert", "preset": "nano",
                  "config": {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}},
        "data": {"text": {"tokenizer": str(tokenizer), "max_length": 32, "packing": False}},
    }))


def digits(task, n: int, train: bool = True) -> dict[str, torch.Tensor]:
    data = load_data(task.recipe.data, required=task.required_columns)
    examples = []
    for i in range(n):
        torch.manual_seed(i)
        examples.append(task.preprocess(data[i], train=train))
    return task.collate(examples) if train else task.collate_eval(examples)


def sounds(task, n: int, train: bool = True) -> dict[str, torch.Tensor]:
    examples = []
    for i, clip in enumerate(clips(n)):
        torch.manual_seed(i)
        examples.append(task.preprocess(clip, train=train))
    return task.collate(examples) if train else task.collate_eval(examples)


def test_list_backbones_shows_each_with_its_tasks(capsys):
    assert main(["list", "backbones"]) == 0
    out = capsys.readouterr().out
    for name in BACKBONES.names():
        line = next(line for line in out.splitlines() if line.split()[:1] == [name])
        assert f"[tasks: {', '.join(BACKBONES.get(name).obj.tasks)}]" in line
    assert {"vit", "resnet", "convnext", "wav2vec2", "ast", "logmel_resnet", "bert", "modernbert"} <= set(
        BACKBONES.names())


def test_the_index_says_what_each_backbone_says():
    """Recipe validation reads modality and tasks from the torch-free index."""
    load_all()
    for name, entry in BACKBONES.registered().items():
        spec = entry.obj
        assert spec.name == name
        assert BACKBONES.describe(name).facts == {"modality": spec.modality, "tasks": spec.tasks}, name


@pytest.mark.parametrize("fields, message", [
    ({"task": {"name": "mae"}, "model": {"backbone": "resnet"}},
     r"^model\.backbone: task 'mae' cannot use backbone 'resnet' \(resnet serves simclr, byol, dino; "
     r"mae accepts vit\)$"),
    ({"task": {"name": "simclr", "modality": "text"}, "model": {"backbone": "resnet"}},
     r"^model\.backbone: 'resnet' is a vision backbone; the task reads text$"),
    ({"task": {"name": "data2vec", "modality": "audio"}, "model": {"backbone": "ast"}},
     r"^model\.backbone: task 'data2vec' cannot use backbone 'ast' \(ast serves simclr, byol, dino; "
     r"data2vec accepts bert, modernbert, vit, wav2vec2\)$"),
    ({"task": {"name": "simclr"}, "model": {"backbone": "resnett"}}, r"did you mean 'resnet'"),
])
def test_unsupported_backbone_is_a_one_line_recipe_error(fields, message):
    with pytest.raises(RecipeError, match=message) as err:
        recipe_from_dict({"data": {}, **fields})
    assert "\n" not in str(err.value)


def test_no_backbone_named_builds_todays_encoders():
    task = build_task(recipe_from_dict({"task": {"name": "simclr", **HEADS["simclr"]}, "model": {"preset": "nano"},
                                        "data": {"source": "sklearn_digits", "image": {"size": 16}}}))
    assert type(task.encoder).__name__ == "ViTModel" and task.encoder.pooler is None


@pytest.mark.slow
@pytest.mark.parametrize("backbone", sorted(IMAGE))
def test_simclr_learns_a_fixed_batch_on_image_backbones(backbone):
    task = image_task("simclr", backbone)
    losses = fixed_batch_losses(task, digits(task, 16), 6)
    assert losses[-1] < losses[0] - 0.2, losses


@pytest.mark.slow
@pytest.mark.parametrize("backbone", sorted(AUDIO))
def test_simclr_learns_a_fixed_batch_on_spectrogram_backbones(backbone):
    task = audio_task("simclr", backbone)
    batch = sounds(task, 8)
    frames = 50  # 0.5 s at 100 frames per second, every view padded to it
    key = "pixel_values" if backbone == "logmel_resnet" else "input_values"
    assert batch[f"views_0_{key}"].shape[-2:] == (frames, 32)
    losses = fixed_batch_losses(task, batch, 6)
    assert losses[-1] < losses[0] - 0.1, losses


@pytest.mark.parametrize("task_name", ["byol", "dino"])
@pytest.mark.parametrize("backbone", ["resnet", "ast"])
def test_teacher_tasks_train_on_new_backbones(task_name, backbone):
    task = image_task(task_name, backbone) if backbone in IMAGE else audio_task(task_name, backbone)
    batch = digits(task, 8) if backbone in IMAGE else sounds(task, 8)
    teacher = task.target_encoder if task_name == "byol" else task.teacher_encoder
    before = [p.clone() for p in teacher.parameters()]
    losses = fixed_batch_losses(task, batch, 2)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(a, b) for a, b in zip(before, teacher.parameters()))


@pytest.mark.parametrize("backbone", sorted(IMAGE))
def test_image_backbone_export_loads_with_automodel(backbone, tmp_path):
    from transformers import AutoImageProcessor, AutoModel

    task = image_task("byol", backbone).eval()
    write_export(task, task.recipe, tmp_path / "export")
    encoder = AutoModel.from_pretrained(tmp_path / "export", subfolder="encoder").eval()
    processor = AutoImageProcessor.from_pretrained(tmp_path / "export", subfolder="encoder")
    assert type(encoder) is type(task.encoder)
    data = load_data(task.recipe.data)
    image = decode_image(data[0]["image"], 1)
    ours = digits(task, 1, train=False)
    theirs = processor(image, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(theirs, ours["pixel_values"], atol=2e-2, rtol=0)
    with torch.no_grad():
        pooled = encoder(pixel_values=ours["pixel_values"]).pooler_output.flatten(1)
        assert torch.allclose(pooled, task.embed(ours), atol=1e-5)


@pytest.mark.parametrize("backbone", sorted(AUDIO))
def test_spectrogram_export_loads_with_automodel_and_its_feature_extractor(backbone, tmp_path):
    from transformers import AutoFeatureExtractor, AutoModel

    task = audio_task("simclr", backbone).eval()
    write_export(task, task.recipe, tmp_path / "export")
    extractor = AutoFeatureExtractor.from_pretrained(tmp_path / "export", subfolder="encoder")
    encoder = AutoModel.from_pretrained(tmp_path / "export", subfolder="encoder").eval()
    assert type(encoder) is type(task.encoder)
    wave = tone([440.0], 0.4).numpy()
    ours = task.collate_eval([task.preprocess({"audio": {"array": wave, "sampling_rate": RATE}}, train=False)])
    features = extractor(task.preprocess({"audio": {"array": wave, "sampling_rate": RATE}}, train=False)
                         ["input_values"].numpy(), sampling_rate=RATE, return_tensors="pt")["input_values"]
    with torch.no_grad():
        if backbone == "ast":
            hidden = encoder(input_values=features).last_hidden_state
            theirs = hidden[:, 2:].mean(1)
        else:
            theirs = encoder(pixel_values=features[:, None]).pooler_output.flatten(1)
        torch.testing.assert_close(theirs, task.embed(ours, "mean"), atol=1e-5, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("task_name", ["mlm", "simclr", "data2vec"])
def test_modernbert_learns_a_fixed_batch_and_exports(task_name, tokenizer, tmp_path):
    from transformers import AutoModel, ModernBertModel

    task = modernbert_task(task_name, tokenizer, **({"modality": "text"} if task_name == "simclr" else {}))
    assert type(task.backbone).__name__ == "ModernBertModel"
    examples = []
    for i, example in enumerate(texts(task, 8)):
        torch.manual_seed(i)
        examples.append(task.preprocess(example, train=True))
    losses = fixed_batch_losses(task, task.collate(examples), 6)
    assert losses[-1] < losses[0], losses
    write_export(task.eval(), task.recipe, tmp_path / "export")
    encoder = AutoModel.from_pretrained(tmp_path / "export", subfolder="encoder").eval()
    assert isinstance(encoder, ModernBertModel)
    batch = task.collate_eval([task.preprocess({"text": "the cat sat on the mat"}, train=False)])
    with torch.no_grad():
        hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        torch.testing.assert_close(hidden.mean(1), task.embed(batch, "mean"), atol=1e-5, rtol=0)
