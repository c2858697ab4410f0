"""SimCLR, BYOL and DINO: views, EMA teachers that take no gradients, no collapse."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mmssl.data.sources import load_data
from mmssl.heads.ssl import DINOHead
from mmssl.recipe import load_recipe, recipe_from_dict
from mmssl.tasks.base import build_task
from mmssl.tasks.dino import DINOConfig, teacher_temperature_at
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
        global_crops = task.join(task.view_batches(batch)[:2])
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
        pixels = batches(task, 64, start=500, train=False)
        embeddings = F.normalize(HEAD_OF[name](task)(task.features(task.encoder, pixels)), dim=1)
    std = embeddings.std(dim=0).mean().item()
    assert std > 0.1 / embeddings.shape[1] ** 0.5
    assert all(math.isfinite(loss) for loss in losses)


#: the DINO recipe's anti-collapse settings; the collapse test trains with these
DINO_RECIPE = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "dino_cifar10.yaml")


def dino_recipe_fields(steps: int) -> dict:
    """The recipe's temperatures, momentum, pooling and head norm, with its step counts
    scaled from its ``max_steps`` to ``steps``."""
    task, total = DINO_RECIPE.task, DINO_RECIPE.train.max_steps
    fields = {key: getattr(task, key) for key in (
        "student_temperature", "teacher_temperature", "warmup_teacher_temperature",
        "center_momentum", "momentum", "pooling", "head_batch_norm")}
    for key in ("warmup_teacher_temperature_steps", "freeze_last_layer_steps"):
        fields[key] = round(getattr(task, key) * steps / total)
    return fields


@pytest.mark.slow
def test_dino_teacher_neither_uniform_nor_one_prototype_after_short_training():
    """DINO's two collapse modes: the centered, sharpened teacher output becomes uniform
    (entropy log K) or puts every image on the same prototype; and the teacher's features
    (L2-normalized, pooled as in training) must stay spread across the batch. Without the
    recipe's settings (CLS pooling, no batch norm in the head) the entropy climbs to within
    1% of log K by step 30 and the features' std is about 0.01."""
    steps = 30
    task = make_task("dino", **dino_recipe_fields(steps))
    train = DINO_RECIPE.train
    optimizer = torch.optim.AdamW(param_groups(task, train.weight_decay), lr=train.lr)
    losses = []
    for step in range(steps):
        out = task(batches(task, 32, start=32 * step))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        task.on_step_end(step + 1, steps)
        losses.append(out.loss.item())
    with torch.no_grad():
        pixels = batches(task, 64, start=1300, train=False)
        features = task.features(task.teacher_encoder, pixels)
        logits = task.teacher_head(features)
        probs = torch.softmax((logits - task.center) / task.cfg.teacher_temperature, dim=-1)
    entropy = -(probs * probs.clamp(min=1e-12).log()).sum(-1).mean().item()
    assert 0.05 < entropy < 0.9 * math.log(task.cfg.out_dim)
    assert probs.argmax(-1).unique().numel() >= 8
    assert F.normalize(features, dim=1).std(dim=0).mean().item() > 0.1 / features.shape[1] ** 0.5
    assert all(math.isfinite(loss) for loss in losses)


def test_dino_teacher_temperature_warms_up_linearly():
    cfg = DINOConfig(warmup_teacher_temperature=0.04, teacher_temperature=0.07,
                     warmup_teacher_temperature_steps=10)
    assert [teacher_temperature_at(s, cfg) for s in (0, 5, 10, 50)] == pytest.approx([0.04, 0.055, 0.07, 0.07])
    assert teacher_temperature_at(0, DINOConfig(teacher_temperature=0.07)) == 0.07


def test_dino_last_layer_stays_frozen_for_its_steps_then_learns():
    task = make_task("dino", freeze_last_layer_steps=2)
    optimizer = torch.optim.AdamW(param_groups(task, 0.04), lr=1e-2)
    prototypes = []
    for step in range(3):
        prototypes.append(task.head.last.weight.detach().clone())
        mlp = [p.detach().clone() for p in task.head.mlp.parameters()]
        task(batches(task, 8, start=8 * step)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        task.on_step_end(step + 1, 3)
        assert not any(torch.equal(p, q) for p, q in zip(task.head.mlp.parameters(), mlp))
    prototypes.append(task.head.last.weight.detach().clone())
    assert torch.allclose(prototypes[0], prototypes[2], atol=1e-6)  # steps 1 and 2: frozen
    assert not torch.allclose(prototypes[2], prototypes[3], atol=1e-4)  # step 3 moves them
    assert int(task.step) == 3 and "step" in task.state_dict()  # checkpoints carry the schedule


def test_dino_head_init_and_batch_norm():
    head = DINOHead(32, 64, 16, 128, batch_norm=True)
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3 and sum(isinstance(m, torch.nn.BatchNorm1d) for m in head.mlp) == 2
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in linears)
    assert all(0.015 < m.weight.std() < 0.025 for m in linears)
    assert torch.allclose(head.last.weight.norm(dim=1), torch.ones(128))
