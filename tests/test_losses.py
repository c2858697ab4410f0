"""SSL losses against hand-computed values: NT-Xent, DINO with centering, BYOL, data2vec."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmssl.losses.byol import byol_loss
from mmssl.losses.data2vec import data2vec_loss, data2vec_targets, instance_norm
from mmssl.losses.dino import dino_loss, update_center
from mmssl.losses.nt_xent import nt_xent_loss
from mmssl.tasks.ema import ema_update, momentum_at


def nt_xent_by_hand(z0: torch.Tensor, z1: torch.Tensor, t: float) -> float:
    views = [F.normalize(v, dim=0).tolist() for v in torch.cat([z0, z1])]
    n = z0.shape[0]
    total = 0.0
    for i, a in enumerate(views):
        positive = (i + n) % (2 * n)
        sims = {k: sum(x * y for x, y in zip(a, b)) / t for k, b in enumerate(views) if k != i}
        total += -math.log(math.exp(sims[positive]) / sum(math.exp(s) for s in sims.values()))
    return total / (2 * n)


@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_nt_xent_matches_the_formula(t):
    torch.manual_seed(0)
    z0, z1 = torch.randn(3, 4), torch.randn(3, 4)
    assert nt_xent_loss(z0, z1, t).item() == pytest.approx(nt_xent_by_hand(z0, z1, t), rel=1e-5)


def test_nt_xent_two_orthogonal_pairs():
    # views identical within a pair, pairs orthogonal: s_pos = 1/t, negatives = 0/t
    z = torch.eye(2)
    t = 0.5
    expected = -math.log(math.exp(2) / (math.exp(2) + 2))
    assert nt_xent_loss(z, z.clone(), t).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_rejects_bad_input():
    with pytest.raises(ValueError, match="temperature"):
        nt_xent_loss(torch.randn(2, 3), torch.randn(2, 3), 0.0)
    with pytest.raises(ValueError, match="shape"):
        nt_xent_loss(torch.randn(2, 3), torch.randn(3, 3))


def test_dino_loss_matches_the_formula_with_centering():
    torch.manual_seed(0)
    teacher = [torch.randn(2, 3), torch.randn(2, 3)]
    student = [torch.randn(2, 3) for _ in range(3)]
    center = torch.tensor([0.5, -0.2, 0.1])
    ts, tt = 0.1, 0.04
    total, pairs = 0.0, 0
    for i, t in enumerate(teacher):
        for j, s in enumerate(student):
            if i == j:
                continue
            for b in range(2):
                shifted = [(t[b, k].item() - center[k].item()) / tt for k in range(3)]
                norm = sum(math.exp(x - max(shifted)) for x in shifted)
                p = [math.exp(x - max(shifted)) / norm for x in shifted]
                logits = [s[b, k].item() / ts for k in range(3)]
                log_z = math.log(sum(math.exp(x) for x in logits))
                total += -sum(p[k] * (logits[k] - log_z) for k in range(3)) / 2
            pairs += 1
    assert pairs == 4
    assert dino_loss(student, teacher, center, ts, tt).item() == pytest.approx(total / pairs, rel=1e-5)


def test_dino_centering_changes_the_target():
    teacher = [torch.tensor([[2.0, 0.0]]), torch.tensor([[2.0, 0.0]])]
    student = [torch.tensor([[0.0, 1.0]])] * 2
    plain = dino_loss(student, teacher, torch.zeros(2))
    centered = dino_loss(student, teacher, torch.tensor([2.0, 0.0]))
    # centered, the teacher's target is uniform; the student's logits are [0, 10] (T_s = 0.1)
    lse = math.log(1 + math.exp(10))
    assert centered.item() == pytest.approx(-0.5 * (0 - lse) - 0.5 * (10 - lse), rel=1e-5)
    # uncentered, the sharpened target is one-hot on the dimension the student disfavours
    assert plain.item() == pytest.approx(lse, rel=1e-4)


def test_update_center_is_an_ema_of_the_batch_mean():
    center = torch.tensor([1.0, 0.0])
    teacher = [torch.tensor([[2.0, 2.0]]), torch.tensor([[4.0, 0.0]])]
    assert torch.allclose(update_center(center, teacher, 0.9), torch.tensor([0.9 + 0.1 * 3.0, 0.1 * 1.0]))


def test_byol_loss_values():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert byol_loss(x, x * 3).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(x, -x).item() == pytest.approx(4.0)
    assert byol_loss(x, x.flip(1)).item() == pytest.approx(2.0)


def test_data2vec_targets_average_instance_normalized_top_layers():
    torch.manual_seed(0)
    layers = [torch.randn(2, 5, 3) * (i + 1) + i for i in range(4)]
    expected = sum(
        (h - h.mean(dim=1, keepdim=True)) / torch.sqrt(h.var(dim=1, unbiased=False, keepdim=True) + 1e-5)
        for h in layers[-2:]
    ) / 2
    assert torch.allclose(data2vec_targets(layers, 2), expected, atol=1e-5)
    with pytest.raises(ValueError, match="top_k"):
        data2vec_targets(layers, 5)


def test_instance_norm_ignores_padding():
    torch.manual_seed(0)
    hidden = torch.randn(1, 6, 2)
    valid = torch.tensor([[True, True, True, True, False, False]])
    padded = hidden.clone()
    padded[:, 4:] = 1e4
    assert torch.allclose(instance_norm(padded, valid)[:, :4], instance_norm(hidden[:, :4]), atol=1e-5)


def test_data2vec_loss_mse_and_smooth_l1():
    prediction, target = torch.tensor([[0.0, 3.0]]), torch.tensor([[1.0, 0.0]])
    assert data2vec_loss(prediction, target).item() == pytest.approx((1 + 9) / 2)
    # beta 2: |d|=1 -> 0.5*1/2, |d|=3 -> 3 - 1
    assert data2vec_loss(prediction, target, beta=2.0).item() == pytest.approx((0.25 + 2.0) / 2)


def test_momentum_schedule_is_cosine_from_base_to_final():
    assert momentum_at(0, 100, 0.99) == pytest.approx(0.99)
    assert momentum_at(50, 100, 0.99) == pytest.approx(0.995)
    assert momentum_at(100, 100, 0.99) == pytest.approx(1.0)
    assert momentum_at(100, 100, 0.999, 0.9999) == pytest.approx(0.9999)


def test_ema_update_follows_the_momentum_rule():
    teacher, student = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = [p.detach().clone() for p in teacher.parameters()]
    ema_update(teacher, student, 0.9)
    for t, t0, s in zip(teacher.parameters(), before, student.parameters()):
        assert torch.allclose(t, 0.9 * t0 + 0.1 * s)
