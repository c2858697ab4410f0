"""data2vec: masked student, whole-input EMA teacher, top-K targets, three modalities."""

from __future__ import annotations

import pytest
import torch

from mmssl.data.sources import load_data
from mmssl.losses.data2vec import data2vec_loss, data2vec_targets
from mmssl.recipe import recipe_from_dict
from mmssl.tasks.base import build_task
from mmssl.tasks.ema import momentum_at

VIT = {"patch_size": 4, "hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2,
       "intermediate_size": 64}


def vision_task(**fields):
    torch.manual_seed(0)
    recipe = recipe_from_dict({
        "name": "d2v-test",
        "task": {"name": "data2vec", "modality": "vision", "top_k": 2, **fields},
        "model": {"preset": "nano", "config": VIT},
        "data": {"source": "sklearn_digits", "image": {"size": 16, "random_resized_crop": False,
                                                      "horizontal_flip": False}},
        "train": {"batch_size": 8, "max_steps": 1},
    })
    return build_task(recipe)


def digits(task, n: int = 8, start: int = 0):
    data = load_data(task.recipe.data, required=task.required_columns)
    return task.collate([task.preprocess(data[i]) for i in range(start, start + n)])


def test_vision_mask_count_and_loss_equals_the_targets_at_masked_patches():
    task = vision_task(mask_ratio=0.5)
    batch = digits(task)
    torch.manual_seed(3)
    out = task(batch)
    torch.manual_seed(3)
    mask = task.modality.token_mask(task.encoder, batch, task.cfg)
    assert mask.shape == (8, 16) and torch.equal(mask.sum(1), torch.full((8,), 8))
    with torch.no_grad():
        states = task.teacher(pixel_values=batch["pixel_values"], output_hidden_states=True).hidden_states
        targets = data2vec_targets([h[:, 1:] for h in states[1:]], 2)
        hidden = task.encoder(pixel_values=batch["pixel_values"], bool_masked_pos=mask).last_hidden_state[:, 1:]
        expected = data2vec_loss(task.regression_head(hidden[mask]), targets[mask])
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.metrics["masked_fraction"].item() == pytest.approx(0.5)


def test_student_sees_the_mask_and_the_teacher_does_not():
    task = vision_task()
    batch = digits(task, 2)
    pixels = batch["pixel_values"]
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, :4] = True
    with torch.no_grad():
        plain = task.encoder(pixel_values=pixels, output_hidden_states=True).hidden_states
        masked = task.encoder(pixel_values=pixels, bool_masked_pos=mask).last_hidden_state
        states, _ = task.modality.token_states(task.teacher, batch)
    assert not torch.allclose(plain[-1], masked)
    # the teacher's targets are the unmasked blocks' outputs (before the final layer norm);
    # at init the teacher is the student
    assert len(states) == 3
    assert all(torch.allclose(t, s[:, 1:], atol=1e-6) for t, s in zip(states, plain[1:]))


def test_teacher_gets_no_gradient_and_follows_the_schedule():
    task = vision_task(momentum=0.9, final_momentum=0.99)
    assert not any(p.requires_grad for p in task.teacher.parameters())
    task(digits(task)).loss.backward()
    assert all(p.grad is None for p in task.teacher.parameters())
    before = [p.detach().clone() for p in task.teacher.parameters()]
    with torch.no_grad():
        for p in task.encoder.parameters():
            p.add_(0.1)
    task.on_step_end(5, 10)
    m = momentum_at(5, 10, 0.9, 0.99)
    for t, t0, s in zip(task.teacher.parameters(), before, task.encoder.parameters()):
        assert torch.allclose(t, m * t0 + (1 - m) * s, atol=1e-6)


def test_top_k_larger_than_the_encoder_is_an_error():
    with pytest.raises(ValueError, match="top_k=5"):
        vision_task(top_k=5)


@pytest.mark.slow
def test_vision_loss_goes_down():
    task = vision_task()
    optimizer = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for step in range(15):
        out = task(digits(task, 32, start=(32 * step) % 1000))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        task.on_step_end(step + 1, 15)
        losses.append(out.loss.item())
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3
