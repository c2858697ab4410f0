"""MAE: exact mask counts, visible-only encoder, masked-only loss, and learning."""

from __future__ import annotations

import pytest
import torch

from mmssl.data.sources import load_data
from mmssl.recipe import recipe_from_dict
from mmssl.tasks.base import build_task
from mmssl.tasks.mae import MAETask

TINY = {
    "name": "mae-test",
    "task": {"name": "mae", "mask_ratio": 0.75},
    "model": {
        "preset": "nano",
        "config": {
            "patch_size": 4, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 64, "decoder_hidden_size": 32, "decoder_num_hidden_layers": 1,
            "decoder_num_attention_heads": 2, "decoder_intermediate_size": 64,
        },
    },
    "data": {"source": "sklearn_digits", "image": {"size": 16, "random_resized_crop": False,
                                                  "horizontal_flip": False}},
    "train": {"batch_size": 8, "max_steps": 1},
}


def make_task(**task_fields) -> MAETask:
    torch.manual_seed(0)
    recipe = recipe_from_dict({**TINY, "task": {**TINY["task"], **task_fields}})
    return build_task(recipe)


def digits_batch(task: MAETask, n: int = 8) -> dict[str, torch.Tensor]:
    data = load_data(task.recipe.data, required=task.required_columns)
    return task.collate([task.preprocess(data[i], train=False) for i in range(n)])


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9])
def test_mask_keeps_exactly_the_requested_number_of_patches(ratio):
    task = make_task(mask_ratio=ratio)
    batch = digits_batch(task)
    out = task.model(pixel_values=batch["pixel_values"])
    num_patches = (16 // 4) ** 2
    visible = int(num_patches * (1 - ratio))
    assert out.mask.shape == (8, num_patches)
    assert torch.equal(out.mask.sum(dim=1), torch.full((8,), float(num_patches - visible)))
    # the encoder's input (and output) length is the visible count plus the CLS token
    hidden = task.model.vit(pixel_values=batch["pixel_values"]).last_hidden_state
    assert hidden.shape == (8, visible + 1, 32)


def test_masks_differ_between_examples_and_steps():
    task = make_task()
    batch = digits_batch(task)
    torch.manual_seed(1)
    first = task.model(pixel_values=batch["pixel_values"]).mask
    second = task.model(pixel_values=batch["pixel_values"]).mask
    assert not torch.equal(first, second)
    assert len({tuple(row.tolist()) for row in first}) > 1


def test_loss_is_normalized_pixel_mse_on_masked_patches_only():
    task = make_task()
    batch = digits_batch(task)
    pixels = batch["pixel_values"]
    noise = torch.rand(8, 16, generator=torch.Generator().manual_seed(3))
    out = task.model(pixel_values=pixels, noise=noise)
    target = task.model.patchify(pixels)
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
    target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = ((out.logits - target) ** 2).mean(-1)
    expected = (per_patch * out.mask).sum() / out.mask.sum()
    torch.testing.assert_close(out.loss, expected)
    # changing the prediction of a visible patch leaves the loss unchanged
    visible = (out.mask[0] == 0).nonzero()[0].item()
    shifted = out.logits.clone()
    shifted[0, visible] += 10.0
    again = (((shifted - target) ** 2).mean(-1) * out.mask).sum() / out.mask.sum()
    torch.testing.assert_close(again, expected)


def test_position_tables_are_sincos_not_zero():
    """transformers 5 builds ViT-MAE from a config with zeroed tables; the task fills them."""
    task = make_task()
    for table in (task.model.vit.embeddings.position_embeddings, task.model.decoder.decoder_pos_embed):
        rows = table[0, 1:]
        assert rows.abs().sum() > 0
        assert len({tuple(r.tolist()) for r in rows}) == rows.shape[0]  # every patch is distinct


def test_task_forward_returns_loss_and_mask_ratio_metric():
    task = make_task()
    out = task(digits_batch(task))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert float(out.metrics["mask_ratio"]) == pytest.approx(0.75)


def test_embed_uses_all_patches_and_restores_the_mask_ratio():
    task = make_task()
    batch = digits_batch(task)
    task.eval()
    features = task.embed(batch, pooling="mean")
    assert features.shape == (8, 32)
    assert task.model.vit.config.mask_ratio == 0.75
    torch.testing.assert_close(task.embed(batch, pooling="mean"), features)  # no random masking
    assert task.embed(batch, pooling="cls").shape == (8, 32)


@pytest.mark.slow
def test_loss_on_a_fixed_batch_falls_by_half_within_200_steps():
    task = make_task()
    batch = digits_batch(task, n=4)
    optimizer = torch.optim.AdamW(task.parameters(), lr=2e-3, weight_decay=0.0)
    torch.manual_seed(0)
    losses = []
    for _ in range(200):
        loss = task(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    start = sum(losses[:5]) / 5
    end = sum(losses[-5:]) / 5
    assert end < 0.5 * start, (start, end)
