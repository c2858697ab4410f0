"""SimCLR, BYOL and DINO: views, EMA teachers that take no gradients, no collapse."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmssl.data.sources import load_data
from mmssl.recipe import recipe_from_dict
from mmssl.tasks.base import build_task
from mmssl.tasks.ema import momentum_at
from mmssl.train.optim import param_groups

VIT = {"patch_size": 4, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
       "intermediate_size": 64}
HEADS = {
    "simclr": {"projection_dim": 16, "projection_hidden_dim": 32, "blur_prob": 0.0},
    "byol": {"projection_dim": 16, "hidden_dim": 32},
    "dino": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16, "num_local_crops": 2},
}

#: the head whose output the loss compares (DINO: its bottleneck, before the prototypes)
HEAD_OF = {"simclr": lambda t: t.projection, "byol": lambda t: t.projector, "dino": lambda t: t.head.mlp}


def make_task(name: str, **fields):
    torch.manual_seed(0)
    recipe = recipe_from_dict({
        "name": f"{name}-test",
        "task": {"name": name, **HEADS[name], **fields},
        "model": {"preset": "nano", "config": VIT},
        "data": {"source": "sklearn_digits", "image": {"size": 16, "crop_scale": [0.5, 1.0],
                                                      "horizontal_flip": False}},
        "train": {"batch_size": 16, "max_steps": 1},
    })
    return build_task(recipe)


def batches(task, n: int = 16, start: int = 0, train: bool = True):
    if not hasattr(task, "_test_data"):
        task._test_data = load_data(task.recipe.data, required=task.required_columns)
    data = task._test_data
    examples = []
    for i in range(start, start + n):
        torch.manual_seed(i)
        examples.append(task.preprocess(data[i], train=train))
    return task.collate(examples) if train else task.collate_eval(examples)


def test_two_views_differ_and_are_seeded():
    task = make_task("simclr")
    batch = batches(task, 4)
    assert set(batch) == {"views_0", "views_1"}
    assert batch["views_0"].shape == (4, 3, 16, 16)
    assert not torch.equal(batch["views_0"], batch["views_1"])
    assert torch.equal(batches(task, 4)["views_0"], batch["views_0"])


def test_dino_multi_crop_shapes():
    task = make_task("dino", num_local_crops=3, local_size=8)
    batch = batches(task, 4)
    assert [batch[f"views_{k}"].shape[-1] for k in range(5)] == [16, 16, 8, 8, 8]


@pytest.mark.parametrize("name, student, teacher", [
    ("dino", ("encoder", "head"), ("teacher_encoder", "teacher_head")),
    ("byol", ("encoder", "projector"), ("target_encoder", "target_projector")),
])
def test_teacher_gets_no_gradient_and_moves_by_the_momentum_rule(name, student, teacher):
    task = make_task(name)
    teacher_params = [p for t in teacher for p in getattr(task, t).parameters()]
    student_params = [p for s in student for p in getattr(task, s).parameters()]
    optimizer = torch.optim.SGD([p for p in task.parameters() if p.requires_grad], lr=0.5)
    in_optimizer = {id(p) for group in param_groups(task, 0.0) for p in group["params"]}
    assert not any(id(p) in in_optimizer for p in teacher_params)

    before = [p.detach().clone() for p in teacher_params]
    task(batches(task)).loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in teacher_params)
    optimizer.step()
    assert all(torch.equal(p, b) for p, b in zip(teacher_params, before))  # the step leaves it

    task.on_step_end(3, 10)
    m = momentum_at(3, 10, task.cfg.momentum)
    for t, t0, s in zip(teacher_params, before, student_params):
        assert torch.allclose(t, m * t0 + (1 - m) * s.detach(), atol=1e-6)
    assert any(not torch.equal(t, t0) for t, t0 in zip(teacher_params, before))


def test_dino_center_tracks_the_teacher_outputs():
    task = make_task("dino")
    batch = batches(task)
    with torch.no_grad():
        global_crops = torch.cat([batch["views_0"], batch["views_1"]])
        mean = task.teacher_head(task.features(task.teacher_encoder, global_crops)).mean(0)
        task(batch)
    assert torch.allclose(task.center, 0.1 * mean, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["simclr", "byol"])
def test_no_collapse_after_short_training(name):
    """The std across the batch of L2-normalized embeddings (the space the loss sees) stays
    a clear fraction of that of spread-out points (1/sqrt(dim) per dimension); collapse (all
    examples on one point) drives it to 0. Measured in training mode, as the loss sees it."""
    task = make_task(name)
    optimizer = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for step in range(8):
        out = task(batches(task, 32, start=32 * step))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        task.on_step_end(step + 1, 8)
        losses.append(out.loss.item())
    with torch.no_grad():
        pixels = batches(task, 64, start=500, train=False)["pixel_values"]
        embeddings = F.normalize(HEAD_OF[name](task)(task.features(task.encoder, pixels)), dim=1)
    std = embeddings.std(dim=0).mean().item()
    assert std > 0.1 / embeddings.shape[1] ** 0.5
    assert all(math.isfinite(loss) for loss in losses)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="known: the nano ViT maps all images to almost one CLS "
                   "feature at init and 8 DINO steps do not leave that state (see docs/tasks.md)")
def test_dino_teacher_neither_uniform_nor_one_prototype_after_short_training():
    """DINO's two collapse modes: the centered, sharpened teacher output becomes uniform
    (entropy log K) or puts every image on the same prototype."""
    task = make_task("dino")
    optimizer = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=1e-3)
    for step in range(8):
        out = task(batches(task, 32, start=32 * step))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        task.on_step_end(step + 1, 8)
    with torch.no_grad():
        pixels = batches(task, 64, start=500, train=False)["pixel_values"]
        logits = task.teacher_head(task.features(task.teacher_encoder, pixels))
        probs = torch.softmax((logits - task.center) / task.cfg.teacher_temperature, dim=-1)
    entropy = -(probs * probs.clamp(min=1e-12).log()).sum(-1).mean().item()
    assert 0.05 < entropy < 0.95 * math.log(task.cfg.out_dim)
    assert probs.argmax(-1).unique().numel() > 1
