"""CLIP loss: hand-computed InfoNCE, the logit-scale cap, and gathering across processes."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from mmssl.losses.infonce import clip_logit_scale, clip_loss, init_log_scale


def hand_infonce(a: list[list[float]], b: list[list[float]], scale: float) -> float:
    """Symmetric InfoNCE written out with Python floats."""
    n = len(a)
    sim = [[scale * sum(x * y for x, y in zip(a[i], b[j])) for j in range(n)] for i in range(n)]

    def ce(rows: list[list[float]]) -> float:
        return sum(-rows[i][i] + math.log(sum(math.exp(v) for v in rows[i])) for i in range(n)) / n

    columns = [[sim[i][j] for i in range(n)] for j in range(n)]
    return (ce(sim) + ce(columns)) / 2


def test_loss_equals_hand_computed_infonce():
    a = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
    b = [[0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]]
    loss, accuracy = clip_loss(torch.tensor(a), torch.tensor(b), torch.tensor(10.0), gather=False)
    assert loss.item() == pytest.approx(hand_infonce(a, b, 10.0), rel=1e-5)
    # a->b: rows 0, 1 right, row 2 picks b0 (0.96); b->a: b0 picks a2, b1 right, b2 picks a1
    assert accuracy.item() == pytest.approx((2 / 3 + 1 / 3) / 2)


def test_perfect_alignment_gives_low_loss_and_swapping_is_symmetric():
    x = F.normalize(torch.randn(8, 16), dim=-1)
    y = F.normalize(torch.randn(8, 16), dim=-1)
    aligned, _ = clip_loss(x, x, torch.tensor(100.0), gather=False)
    random, _ = clip_loss(x, y, torch.tensor(100.0), gather=False)
    assert aligned.item() < 0.01 < random.item()
    assert clip_loss(x, y, torch.tensor(5.0), gather=False)[0].item() == pytest.approx(
        clip_loss(y, x, torch.tensor(5.0), gather=False)[0].item(), rel=1e-6
    )


def test_same_label_rows_are_left_out_of_the_negatives():
    torch.manual_seed(1)
    a, b = F.normalize(torch.randn(4, 3), dim=-1), F.normalize(torch.randn(4, 3), dim=-1)
    labels = torch.tensor([0, 1, 0, 2])
    scale = torch.tensor(5.0)
    expected = 0.0
    for i in range(4):
        keep = [j for j in range(4) if j == i or labels[j] != labels[i]]
        for x, y in ((a, b), (b, a)):
            logits = scale * x[i] @ y[keep].T
            expected += -(logits[keep.index(i)] - torch.logsumexp(logits, 0)) / 8
    loss, _ = clip_loss(a, b, scale, gather=False, labels=labels)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    unmasked, _ = clip_loss(a, b, scale, gather=False)
    assert loss.item() < unmasked.item()
    distinct, _ = clip_loss(a, b, scale, gather=False, labels=torch.arange(4))
    assert distinct.item() == pytest.approx(unmasked.item(), rel=1e-6)


def test_logit_scale_is_capped_at_the_maximum():
    assert clip_logit_scale(torch.tensor(math.log(1000.0))).item() == pytest.approx(100.0)
    assert clip_logit_scale(torch.tensor(math.log(20.0))).item() == pytest.approx(20.0)
    assert init_log_scale(0.07) == pytest.approx(math.log(1 / 0.07))
    with pytest.raises(ValueError):
        init_log_scale(0.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, a: torch.Tensor, b: torch.Tensor, w: torch.Tensor, out: dict,
            labels: torch.Tensor | None) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        sizes = [3, 2]  # uneven slices, as after a skipped bad example
        start = sum(sizes[:rank])
        weight = w.clone().requires_grad_(True)
        scale = torch.tensor(7.0, requires_grad=True)
        local_a = F.normalize(a[start : start + sizes[rank]] @ weight, dim=-1)
        local_b = F.normalize(b[start : start + sizes[rank]], dim=-1)
        local_labels = None if labels is None else labels[start : start + sizes[rank]]
        loss, _ = clip_loss(local_a, local_b, scale, labels=local_labels)
        loss.backward()
        # DDP averages gradients and the loop averages the logged loss over processes
        for t in (weight.grad, scale.grad, loss.detach()):
            dist.all_reduce(t)
            t /= world
        out[rank] = (loss.detach().clone(), weight.grad.clone(), scale.grad.clone())
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("labels", [None, torch.tensor([0, 1, 2, 0, 1])], ids=["all-negatives", "same-label-masked"])
def test_gathered_loss_and_gradients_match_one_process_with_the_whole_batch(labels):
    torch.manual_seed(0)
    a, b, w = torch.randn(5, 6), torch.randn(5, 4), torch.randn(6, 4)
    weight = w.clone().requires_grad_(True)
    scale = torch.tensor(7.0, requires_grad=True)
    full, _ = clip_loss(F.normalize(a @ weight, dim=-1), F.normalize(b, dim=-1), scale, gather=False, labels=labels)
    full.backward()

    out = mp.Manager().dict()
    mp.spawn(_worker, args=(2, _free_port(), a, b, w, out, labels), nprocs=2, join=True)
    for rank in (0, 1):
        loss, grad_w, grad_scale = out[rank]
        assert loss.item() == pytest.approx(full.item(), rel=1e-5)
        torch.testing.assert_close(grad_w, weight.grad, rtol=1e-4, atol=1e-6)
        assert grad_scale.item() == pytest.approx(scale.grad.item(), rel=1e-4)
