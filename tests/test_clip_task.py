"""The clip task: AV-MNIST end to end, class pairing, the logit-scale clamp, locked towers,
and the image-text export as a transformers VisionTextDualEncoderModel."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mmssl.data.pairing import ClassPairing, ClassPartners, Pairing
from mmssl.recipe import recipe_from_dict
from mmssl.tasks.base import build_task
from mmssl.train.loop import pretrain

SMALL_VIT = {"patch_size": 7, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 64}
SMALL_W2V = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
             "conv_dim": [16, 16, 16, 16]}


def av_mnist(data, tmp_path, **task) -> dict:
    return {
        "name": "clip-test",
        "output_dir": str(tmp_path / "run"),
        "task": {
            "name": "clip", "modalities": ["vision", "audio"], "embed_dim": 16,
            "towers": {"vision": {"config": SMALL_VIT, "pooling": "mean"}, "audio": {"config": SMALL_W2V}},
            "pair_with": {"data_files": {"train": str(data / "fsdd/train.parquet"),
                                         "test": str(data / "fsdd/test.parquet")}},
            **task,
        },
        "data": {"data_files": {"train": str(data / "mnist/train.parquet"), "test": str(data / "mnist/test.parquet")},
                 "max_examples": 128,
                 "image": {"size": 28, "channels": 1, "mean": [0.5], "std": [0.5],
                           "random_resized_crop": False, "horizontal_flip": False},
                 "audio": {"max_seconds": 1.0}},
        "train": {"batch_size": 16, "max_steps": 4, "lr": 1e-3, "log_every": 1, "save_every": 0,
                  "progress": False, "cpu": True},
    }


def test_class_pairing_draws_partners_of_the_same_label():
    pairing = ClassPairing([0, 1, 0, 2, 1, 0], needed=[0, 1, 2])
    torch.manual_seed(0)
    picks = [pairing.pick(0) for _ in range(50)]
    assert set(picks) == {0, 2, 5}
    assert pairing.pick(2) == 3
    with pytest.raises(ValueError, match=r"label\(s\) \[7\]"):
        ClassPairing([0, 1], needed=[0, 7])


def test_the_pairing_comes_from_the_recipe_and_the_columns(tmp_path):
    import datasets

    from mmssl.data.pairing import LabelPrompts, build_pairing
    from mmssl.errors import DataError

    recipe = recipe_from_dict({"task": {"name": "clip", "prompts": ["a {name}", "the {name}"]}, "data": {}})
    roles = ("image", "text")
    labelled = datasets.Dataset.from_dict(
        {"image": [b"x", b"y"], "label": [0, 1]},
        features=datasets.Features({"image": datasets.Value("binary"),
                                    "label": datasets.ClassLabel(names=["cat", "dog"])}),
    )
    prompts = build_pairing(recipe, roles, labelled)
    assert isinstance(prompts, LabelPrompts) and prompts.by_class
    assert prompts.values(labelled[1], train=False) == {"image": b"y", "text": "a dog"}
    torch.manual_seed(0)
    assert {prompts.values(labelled[0], train=True)["text"] for _ in range(30)} == {"a cat", "the cat"}
    captioned = datasets.Dataset.from_dict({"image": [b"x"], "text": ["a cat on a mat"]})
    paired = build_pairing(recipe, roles, captioned)
    assert type(paired) is Pairing and not paired.by_class
    assert paired.values(captioned[0], train=True) == captioned[0]
    with pytest.raises(DataError, match="no 'text' column to pair with 'image'"):
        build_pairing(recipe, roles, captioned.remove_columns("text"))
    with_partner = recipe_from_dict({"task": {"name": "clip", "pair_with": {"data_files": {"train": "x.parquet"}}}, "data": {}})
    with pytest.raises(DataError, match="pairing by class needs a 'label' column"):
        build_pairing(with_partner, roles, captioned)


@pytest.mark.slow
def test_av_mnist_end_to_end(shared_data, tmp_path):
    from mmssl.eval.alignment import evaluate_run

    recipe = recipe_from_dict(av_mnist(shared_data, tmp_path))
    result = pretrain(recipe)
    assert result.step == 4 and math.isfinite(result.last_metrics["loss"])
    assert 0 < result.last_metrics["logit_scale"] <= 100
    report, path = evaluate_run(recipe.run_dir, max_examples=100)
    assert json.loads(path.read_text()) == report
    assert report["pairing"] == "classes" and report["num_examples"] == {"vision": 100, "audio": 100}
    for key in ("vision_to_audio/R@1", "vision_to_audio/R@10", "audio_to_vision/R@5"):
        assert 0.0 <= report["retrieval"][key] <= 1.0
    assert report["zero_shot"]["vision_by_audio_prototypes"]["chance"] == pytest.approx(0.1)


@pytest.mark.slow
def test_preprocess_pairs_each_image_with_a_recording_of_its_digit(shared_data, tmp_path):
    from mmssl.data.sources import load_data

    recipe = recipe_from_dict(av_mnist(shared_data, tmp_path))
    task = build_task(recipe)
    data = task.prepare_dataset(load_data(recipe.data, required=task.required_columns))
    assert isinstance(task.pairing, ClassPartners) and task.masks_same_label
    partner_labels = task.pairing.partner["label"]
    for index in range(5):
        torch.manual_seed(index)
        partner = task.pairing.pairing.pick(data[index]["label"])
        assert partner_labels[partner] == data[index]["label"]
    example = task.preprocess(data[0])
    batch = task.collate([example, task.preprocess(data[1])])
    assert batch["vision.pixel_values"].shape == (2, 1, 28, 28)
    assert batch["audio.input_values"].shape[0] == 2 and batch["audio.attention_mask"].shape[0] == 2
    assert batch["labels"].tolist() == [data[0]["label"], data[1]["label"]]


@pytest.mark.slow
def test_loss_goes_down_on_a_fixed_batch_and_locked_tower_stays_put(shared_data, tmp_path):
    from mmssl.data.sources import load_data

    torch.manual_seed(0)
    recipe = recipe_from_dict(av_mnist(shared_data, tmp_path, towers={
        "vision": {"config": SMALL_VIT, "pooling": "mean", "freeze": True}, "audio": {"config": SMALL_W2V}}))
    task = build_task(recipe)
    data = task.prepare_dataset(load_data(recipe.data, required=task.required_columns))
    batch = task.collate([task.preprocess(data[i], train=False) for i in range(16)])
    frozen = {k: v.clone() for k, v in task.towers["vision"].state_dict().items()}
    projection = task.projections["vision"].net.weight.clone()
    params = [p for p in task.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=3e-3)
    task.train()
    losses = []
    for _ in range(15):
        loss = task(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0]
    assert all(torch.equal(v, task.towers["vision"].state_dict()[k]) for k, v in frozen.items())
    assert not torch.equal(projection, task.projections["vision"].net.weight)


@pytest.mark.slow
def test_logit_scale_is_clamped_after_each_step(shared_data, tmp_path):
    task = build_task(recipe_from_dict(av_mnist(shared_data, tmp_path, max_logit_scale=50.0)))
    with torch.no_grad():
        task.logit_scale.fill_(math.log(1000.0))
    assert task.scale().item() == pytest.approx(50.0)
    task.on_step_end(1, 10)
    assert task.logit_scale.item() == pytest.approx(math.log(50.0))


@pytest.mark.slow
def test_image_text_export_loads_as_a_dual_encoder(shared_data, tmp_path):
    import datasets
    from transformers import AutoModel, VisionTextDualEncoderProcessor

    from mmssl.data.sources import load_data
    from mmssl.modalities.tokenizer import train_tokenizer
    from mmssl.modalities.vision import decode_image

    captions = datasets.load_dataset(
        "parquet", data_files=str(shared_data / "flickr8k_1k/train.parquet"), split="train"
    )["captions"]
    train_tokenizer((c for group in captions for c in group), tmp_path / "tok", vocab_size=300)
    recipe = recipe_from_dict({
        "task": {"name": "clip", "modalities": ["vision", "text"], "embed_dim": 16,
                 "towers": {"vision": {"config": {**SMALL_VIT, "patch_size": 8}},
                            "text": {"config": {"hidden_size": 32, "num_hidden_layers": 1,
                                                "num_attention_heads": 2, "intermediate_size": 64}}}},
        "data": {"data_files": {"train": str(shared_data / "flickr8k_1k/test.parquet")},
                 "columns": {"text": "captions"}, "max_examples": 4,
                 "image": {"size": 32}, "text": {"tokenizer": str(tmp_path / "tok"), "max_length": 32}},
    })
    torch.manual_seed(0)
    task = build_task(recipe).eval()
    data = task.prepare_dataset(load_data(recipe.data, required=task.required_columns))
    assert type(task.pairing) is Pairing and not task.masks_same_label
    batch = task.collate([task.preprocess(data[i], train=False) for i in range(4)])
    task.export_model().save_pretrained(tmp_path / "export")
    task.processor().save_pretrained(tmp_path / "export")

    model = AutoModel.from_pretrained(tmp_path / "export").eval()
    processor = VisionTextDualEncoderProcessor.from_pretrained(tmp_path / "export")
    assert type(model).__name__ == "VisionTextDualEncoderModel"
    inputs = processor(text=[data[i]["text"][0] for i in range(4)],
                       images=[decode_image(data[i]["image"]) for i in range(4)],
                       return_tensors="pt", padding=True, truncation=True, max_length=32)
    with torch.no_grad():
        out = model(**inputs)
        ours_image = task.encode("vision", task.inputs(batch, "vision"))
        ours_text = task.encode("text", task.inputs(batch, "text"))
    # the processor resizes with PIL like the eval transform; uint8 rounding leaves ~1e-4
    torch.testing.assert_close(out.image_embeds, ours_image, rtol=1e-3, atol=3e-4)
    torch.testing.assert_close(out.text_embeds, ours_text, rtol=1e-4, atol=1e-5)
    assert model.logit_scale.exp().item() == pytest.approx(task.scale().item(), rel=1e-5)
