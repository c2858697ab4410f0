"""data2vec 2.0: block masks, visible-only student, conv decoder, multi-mask targets."""

from __future__ import annotations

import math

import pytest
import torch
from test_views_audio_text import (  # noqa: F401 (fixtures)
    clips,
    fixed_batch_losses,
    texts,
    tokenizer_dir,
    train_batch,
)

from mmssl.data.sources import load_data
from mmssl.modalities.block_mask import block_noise, visible_set
from mmssl.recipe import RecipeError, recipe_from_dict
from mmssl.tasks.base import build_task

VIT = {"patch_size": 4, "hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2,
       "intermediate_size": 64}
SMALL = {"top_k": 2, "num_masks": 2, "mask_block": 2, "decoder_dim": 32, "decoder_groups": 4,
         "decoder_layers": 2}


def vision_task(**fields):
    torch.manual_seed(0)
    return build_task(recipe_from_dict({
        "task": {"name": "data2vec2", "modality": "vision", **SMALL, **fields},
        "model": {"preset": "nano", "config": VIT},
        "data": {"source": "sklearn_digits", "image": {"size": 16, "random_resized_crop": False,
                                                      "horizontal_flip": False}},
    }))


def digits(task, n: int, start: int = 0):
    data = load_data(task.recipe.data, required=task.required_columns)
    return task.collate([task.preprocess(data[i]) for i in range(start, start + n)])


def runs(row: torch.Tensor) -> int:
    """Number of maximal runs of True in a 1D bool tensor."""
    return int(row[0]) + int((row[1:] & ~row[:-1]).sum())


def test_block_masks_keep_an_exact_count_in_blocks_and_never_padding():
    torch.manual_seed(0)
    valid = torch.ones(64, 64, dtype=torch.bool)
    valid[1::2, 40:] = False  # odd rows: 40 real positions
    kept = visible_set(block_noise(64, (64,), 8), 0.75, valid)
    assert torch.equal(kept.visible.sum(1), torch.where(valid.all(1), 16, 10))
    assert not (kept.visible & ~valid).any()
    assert torch.equal(kept.index.sort(1).values, kept.index)  # ascending: position order kept
    # 16 kept of 64 in spans of 8 (the two end spans may be cut short) form at most 4 runs;
    # 16 random positions would form about 12
    assert max(runs(row) for row in kept.visible[::2]) <= 4
    grid = visible_set(block_noise(16, (8, 8), 4), 0.75).visible.view(16, 8, 8)
    assert torch.equal(grid.sum((1, 2)), torch.full((16,), 16))
    # inverse block masking: kept patches lie in blocks, so each has on average more than 2
    # kept 4-neighbours; 16 random patches of 64 would have about 0.9
    assert kept_neighbours(grid) > 2.0
    assert kept_neighbours(torch.rand(16, 64).argsort(1).argsort(1).view(16, 8, 8) < 16) < 1.2


def kept_neighbours(grid: torch.Tensor) -> float:
    """Mean number of kept up/down/left/right neighbours of a kept cell of ``[n, h, w]``."""
    g = torch.nn.functional.pad(grid.float(), (1, 1, 1, 1))
    around = g[:, :-2, 1:-1] + g[:, 2:, 1:-1] + g[:, 1:-1, :-2] + g[:, 1:-1, 2:]
    return (around * grid).sum().item() / grid.sum().item()


def instance_normed(h: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """By hand: each feature over the positions of one example, biased variance."""
    mean = h.sum(0) / h.shape[0]
    var = ((h - mean) ** 2).sum(0) / h.shape[0]
    return (h - mean) / torch.sqrt(var + eps)


def test_vision_loss_equals_a_hand_computation_per_example_and_mask():
    """Two images x two masks: the student is run on each (image, mask) alone, the target is
    the teacher's top-2 layers instance-normalised by hand, the loss the mean over masked
    patches and features of the squared error."""
    task = vision_task(mask_ratio=0.5)
    batch = digits(task, 2)
    torch.manual_seed(3)
    out = task(batch)
    torch.manual_seed(3)
    kept = task.draw_masks(4, 16, None, torch.device("cpu"))
    enc, decoder = task.encoder, task.regression_head
    errors, count = 0.0, 0
    with torch.no_grad():
        for row in range(4):
            image = batch["pixel_values"][row // 2: row // 2 + 1]
            states = task.teacher(pixel_values=image, output_hidden_states=True).hidden_states
            target = (instance_normed(states[-1][0, 1:]) + instance_normed(states[-2][0, 1:])) / 2
            index = kept.index[row]
            embedded = enc.embeddings(image)
            hidden = torch.cat([embedded[:, :1], embedded[:, 1:][:, index]], dim=1)
            for layer in enc.layers:
                hidden = layer(hidden)
            hidden = enc.layernorm(hidden)[:, 1:]
            full = decoder.mask_embedding.expand(16, -1).clone()
            full[index] = decoder.project_in(hidden[0])
            grid = full.T.reshape(1, -1, 4, 4)
            for block in decoder.blocks:
                grid = grid + block(grid)
            prediction = decoder.project_out(grid.flatten(2)[0].T)
            masked = [p for p in range(16) if p not in index.tolist()]
            errors += ((prediction[masked] - target[masked]) ** 2).sum().item()
            count += len(masked) * prediction.shape[1]
    assert len(index) == 8
    assert out.loss.item() == pytest.approx(errors / count, rel=1e-4)
    assert out.metrics["masked_fraction"].item() == pytest.approx(0.5)


def test_teacher_is_the_ema_of_the_encoder_only():
    task = vision_task()
    names = {n for n, _ in task.teacher.named_parameters()}
    assert names == {n for n, _ in task.encoder.named_parameters()}
    assert not any(p.requires_grad for p in task.teacher.parameters())
    assert task.encoder.embeddings.mask_token is None  # masked patches are dropped, not replaced
    task(digits(task, 4)).loss.backward()
    assert all(p.grad is None for p in task.teacher.parameters())
    assert all(p.grad is not None for p in task.regression_head.parameters())
    with torch.no_grad():
        for p in task.encoder.parameters():
            p.add_(0.1)
    before = [p.clone() for p in task.teacher.parameters()]
    task.on_step_end(0, 10)  # momentum 0.9998 at step 0
    moved = [(t - b).abs().max().item() for t, b in zip(task.teacher.parameters(), before)]
    assert max(moved) == pytest.approx(0.1 * (1 - 0.9998), rel=1e-2)


@pytest.mark.parametrize("fields, message", [
    ({"decoder_dim": 30}, "decoder_groups"),
    ({"mask_ratio": 1.0}, "mask_ratio"),
    ({"top_k": 9}, "top_k"),
])
def test_bad_settings_are_one_line_errors(fields, message):
    with pytest.raises((RecipeError, ValueError), match=message):
        vision_task(**fields)


def audio_text_task(modality: str, tokenizer: str | None):
    torch.manual_seed(0)
    data = ({"audio": {"max_seconds": 1.0, "min_seconds": 0.1}} if modality == "audio" else
            {"text": {"tokenizer": tokenizer, "max_length": 32, "packing": False}})
    return build_task(recipe_from_dict({
        "task": {"name": "data2vec2", "modality": modality, **SMALL, "mask_ratio": 0.5},
        "model": {"preset": "nano"}, "data": data,
    }))


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["vision", "audio", "text"])
def test_loss_goes_down_on_a_fixed_batch(modality, tokenizer_dir):  # noqa: F811 (fixture)
    if modality == "vision":
        task = vision_task()
        batch = digits(task, 16)
    else:
        task = audio_text_task(modality, str(tokenizer_dir))
        batch = train_batch(task, clips(6) if modality == "audio" else texts(task, 6))
    losses = fixed_batch_losses(task, batch, 12, reseed=True)
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3, losses


def test_padding_is_never_seen_nor_predicted(tokenizer_dir):  # noqa: F811 (fixture)
    task = audio_text_task("text", str(tokenizer_dir))
    batch = train_batch(task, texts(task, 4))
    valid = batch["attention_mask"].bool()
    assert not valid.all()  # the texts differ in length
    torch.manual_seed(1)
    out = task(batch)
    torch.manual_seed(1)
    kept = task.draw_masks(8, valid.shape[1], valid.repeat_interleave(2, 0), torch.device("cpu"))
    real = valid.repeat_interleave(2, 0)
    assert not (kept.visible & ~real).any()
    masked = (~kept.visible & real).sum().item()
    assert out.metrics["masked_fraction"].item() == pytest.approx(masked / real.numel())


@pytest.mark.parametrize("modality, backbone", [("vision", "vit"), ("text", "bert"), ("audio", "wav2vec2")])
def test_the_default_backbones_serve_data2vec2(modality, backbone):
    recipe = recipe_from_dict({"task": {"name": "data2vec2", "modality": modality},
                               "model": {"backbone": backbone}, "data": {}})
    assert recipe.model.backbone == backbone
