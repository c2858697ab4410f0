"""BYOL-A's spectrogram views (mixup in the power domain, random resized crop) on known
log-mels, and a SimCLR batch of a spectrogram encoder that uses them."""

from __future__ import annotations

import math

import pytest
import torch
from test_views_audio_text import clips

from mmssl.augment.audio import SpectrogramViews, log_mixup_exp, random_resized_crop
from mmssl.augment.configs import AudioViewConfig
from mmssl.recipe import RecipeError, recipe_from_dict
from mmssl.tasks.base import build_task


def test_log_mixup_exp_adds_powers_at_the_weight():
    spec, other = torch.zeros(2, 3, 4), torch.full((2, 3, 4), math.log(3.0))
    out = log_mixup_exp(spec, other, torch.tensor([0.0, 0.25]))
    assert torch.allclose(out[0], spec[0], atol=1e-6)  # weight 0: the clip itself
    assert torch.allclose(out[1].exp(), torch.full((3, 4), 0.75 * 1 + 0.25 * 3))
    assert torch.allclose(log_mixup_exp(spec, spec, torch.tensor([0.3, 0.3])), spec, atol=1e-6)


def test_mixup_mixes_each_clip_with_another_at_most_at_the_ratio():
    # clip i has power 1 in mel bin i and ~0 elsewhere (x * 2 + 1 is the log power), so after
    # mixup its bin i holds 1 - w and its partner's bin holds w
    count = 6
    log_power = torch.full((count, 1, 3, count), -30.0)
    for i in range(count):
        log_power[i, :, :, i] = 0.0
    views = SpectrogramViews(AudioViewConfig(mixup_ratio=0.4), offset=1.0, scale=2.0)
    for seed in range(3):
        mixed = (views.mixup((log_power - 1) / 2, torch.Generator().manual_seed(seed)) * 2 + 1).exp()
        power = mixed[:, 0, 0]  # [clip, bin]
        partners = []
        for i in range(count):
            others = power[i].clone()
            others[i] = 0
            j = int(others.argmax())
            weight = float(power[i, j])
            assert 0 <= weight <= 0.4 + 1e-6
            assert float(power[i, i]) == pytest.approx(1 - weight, abs=1e-5)
            assert float(others.sum() - weight) < 1e-5  # one partner only
            partners.append(j)
        assert sorted(partners) == list(range(count))  # a derangement: every clip lends once
        assert all(j != i for i, j in enumerate(partners))


def test_random_resized_crop_keeps_the_shape_and_crops_a_contiguous_part():
    ramp = torch.arange(100.0).reshape(1, 100, 1).expand(1, 100, 8).contiguous()  # time ramp
    same = random_resized_crop(ramp, [1.0, 1.0], [1.0, 1.0], torch.Generator().manual_seed(0))
    assert torch.allclose(same, ramp)
    for seed in range(5):
        half = random_resized_crop(ramp, [0.5, 0.5], [1.0, 1.0], torch.Generator().manual_seed(seed))
        assert half.shape == ramp.shape
        assert (half[0, 1:, 0] >= half[0, :-1, 0]).all()  # still in time order
        assert float(half.max() - half.min()) == pytest.approx(49.0, abs=1.0)  # half the span
    wide = random_resized_crop(ramp + 10, [1.5, 1.5], [1.0, 1.0], torch.Generator().manual_seed(0))
    assert float(wide.min()) == pytest.approx(10.0)  # padded with the clip's minimum
    assert float(wide.max() - wide.min()) < 100  # a third of the canvas is padding


@pytest.mark.parametrize("bad", [dict(mixup_ratio=1.0), dict(resized_crop_prob=1.5),
                                 dict(resized_crop_time=[0.0, 1.0]), dict(resized_crop_freq=[1.5, 0.6])])
def test_spectrogram_view_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        AudioViewConfig(**bad)


def spectrogram_task(backbone: str, **views):
    torch.manual_seed(0)
    return build_task(recipe_from_dict({
        "task": {"name": "simclr", "modality": "audio", "projection_dim": 16, "projection_hidden_dim": 32,
                 "audio_views": {"crop_seconds": 0.25, **views}},
        "model": {"backbone": backbone, "preset": "nano"},
        "data": {"audio": {"max_seconds": 0.5, "min_seconds": 0.1, "num_mel_bins": 32}},
    }))


def batch_of(task) -> dict:
    examples = []
    for i, example in enumerate(clips(4)):
        torch.manual_seed(i)
        examples.append(task.preprocess(example, train=True))
    return task.collate(examples)


def test_spectrogram_views_change_the_batch_deterministically_and_keep_its_shape():
    plain = batch_of(spectrogram_task("logmel_resnet"))
    task = spectrogram_task("logmel_resnet", mixup_ratio=0.4, resized_crop_prob=1.0)
    viewed, again = batch_of(task), batch_of(task)
    assert viewed["views_0_pixel_values"].shape == plain["views_0_pixel_values"].shape == (4, 1, 50, 32)
    assert not torch.allclose(viewed["views_0_pixel_values"], plain["views_0_pixel_values"])
    assert all(torch.equal(viewed[k], again[k]) for k in viewed)
    joined = task.join(task.view_batches(viewed))
    assert task.features(task.encoder, joined).shape[0] == 8


def test_spectrogram_views_on_a_waveform_encoder_are_a_clear_error():
    with pytest.raises((ValueError, RecipeError), match="log-mel"):
        spectrogram_task("wav2vec2", mixup_ratio=0.4)
