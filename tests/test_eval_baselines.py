"""Honest baselines: raw-input features and the per-protocol verdict lines of a report."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from mmssl.eval.raw import (
    RAW_MEL_BANDS,
    image_pixels,
    log_mel_statistics,
    raw_input_features,
    tfidf_features,
)
from mmssl.eval.report import baseline_verdicts, markdown_table
from mmssl.recipe import DataConfig


def _png(color: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> dict:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def test_image_pixels_are_32x32_in_unit_range():
    x = image_pixels(_png((255, 0, 51)))
    assert x.shape == (3 * 32 * 32,)
    channels = x.view(3, 32, 32)
    assert torch.allclose(channels[0], torch.ones(32, 32))
    assert torch.allclose(channels[1], torch.zeros(32, 32))
    assert torch.allclose(channels[2], torch.full((32, 32), 0.2))
    assert image_pixels(_png((255, 255, 255)), channels=1).shape == (32 * 32,)


def test_log_mel_statistics_of_a_tone_peak_in_its_band():
    rate = 16000
    t = torch.arange(rate) / rate
    low = log_mel_statistics({"array": np.sin(2 * math.pi * 300 * t).numpy(), "sampling_rate": rate}, rate)
    high = log_mel_statistics({"array": np.sin(2 * math.pi * 3000 * t).numpy(), "sampling_rate": rate}, rate)
    assert low.shape == high.shape == (2 * RAW_MEL_BANDS,)
    low_mean, low_std = low[:RAW_MEL_BANDS], low[RAW_MEL_BANDS:]
    assert low_mean.argmax() < high[:RAW_MEL_BANDS].argmax()  # the higher tone peaks in a higher band
    assert (low_std >= 0).all() and low_std[low_mean.argmax()] < 1.0  # a steady tone barely varies


def test_tfidf_features_are_fitted_on_train_and_l2_normalised():
    train = ["the cat sat", "the cat ran", "my dog ran", "my dog sat"]
    x_train, x_test = tfidf_features(train, ["the cat", "unseen words only"])
    # terms in at least two training texts: the, cat, the cat, sat, ran, my, dog, my dog
    assert x_train.shape == (4, 8) and x_test.shape == (2, 8)
    assert torch.allclose(x_train.norm(dim=1), torch.ones(4))
    assert torch.allclose(x_test[0].norm(), torch.tensor(1.0)) and (x_test[0] > 0).sum() == 3
    assert (x_test[1] == 0).all()


def test_raw_input_features_skip_bad_examples_and_know_their_modalities():
    train = [{"image": _png((0, 0, 0)), "label": 0}, {"image": None, "label": 1}, {"image": _png((9, 9, 9)), "label": 1}]
    test = [{"image": _png((0, 0, 0)), "label": 0}]
    fit, held_out = raw_input_features("vision", "image", DataConfig(), train, test, "label", "skip")
    assert fit.x.shape == (2, 3072) and fit.skipped == 1
    assert fit.index.tolist() == [0, 2] and fit.y.tolist() == [0, 1] and held_out.x.shape == (1, 3072)
    with pytest.raises(Exception, match="raw-input example 1"):
        raw_input_features("vision", "image", DataConfig(), train, test, "label", "raise")
    assert raw_input_features("video", "clip", DataConfig(), train, test, "label") is None


def _scores(*top1: float) -> dict:
    return {f: {"top1": v, "top5": 1.0} for f, v in zip(("0.01", "0.1", "1.0"), top1)}


RESULTS = {
    "pretrained": {"linear": _scores(0.5, 0.6, 0.7), "finetune": _scores(0.5, 0.8, 0.9)},
    "random_init": {"linear": _scores(0.2, 0.3, 0.4)},
    "raw_input": {"linear": _scores(0.4, 0.6, 0.75), "finetune": _scores(0.4, 0.6, 0.75)},
    "supervised_from_scratch": {"finetune": _scores(0.55, 0.7, 0.9)},
}


def test_verdicts_name_each_baseline_and_the_gaps_where_pretraining_loses():
    verdicts = baseline_verdicts(RESULTS)
    assert verdicts["linear"] == (
        "linear: pretrained beats random init at every label fraction; "
        "beats raw input at 1% only (not at 10%: +0.0000, 100%: -0.0500)."
    )
    assert verdicts["finetune"] == (
        "finetune: pretrained beats raw input at every label fraction; "
        "beats supervised from scratch at 10% only (not at 1%: -0.0500, 100%: +0.0000)."
    )


def test_markdown_table_has_a_column_per_baseline_and_the_verdicts():
    report = {"run_dir": "r", "task": "simclr", "checkpoint": "c", "num_classes": 2,
              "sizes": {"train": 9, "val": 1, "test": 3}, "settings": {"pooling": "mean"}, "results": RESULTS}
    table = markdown_table(report)
    assert "| linear | 1% | 0.5000 | 0.2000 | 0.4000 | - | 1.0000 |" in table
    assert "| finetune | 10% | 0.8000 | - | 0.6000 | 0.7000 | 1.0000 |" in table
    assert "- linear: pretrained beats random init at every label fraction;" in table


def test_linear_probe_standardises_with_the_unlabelled_split_so_absent_sparse_terms_stay_small():
    from mmssl.eval.linear import linear_probe

    # column 0 separates the classes; column 1 is a term the labelled subset never contains
    train = (torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]]), torch.tensor([1, 0, 1, 0]))
    test = (torch.tensor([[1.0, 0.5], [-1.0, 0.5]] * 10), torch.tensor([1, 0] * 10))
    unlabelled = torch.cat([train[0], torch.tensor([[0.0, 1.0], [0.0, 0.0]] * 4)])
    scaled = linear_probe(train, train, test, 2, [0.1], [0.0], 50, scale_from=unlabelled)
    assert scaled.top1 == 1.0
    # scaled by the subset alone, the absent term is divided by ~0 and swamps the probe
    assert linear_probe(train, train, test, 2, [0.1], [0.0], 50).top1 == 0.5
