"""Audio adapter: decoding, resampling, cropping, padding, span masks, length grouping."""

from __future__ import annotations

import io
import math
import sys
import wave

import datasets
import numpy as np
import pytest
import torch
from transformers import Wav2Vec2Model

from mmssl.data.length_grouping import LengthGroupedSampler
from mmssl.modalities.audio import (
    AudioAdapter,
    AudioBackendError,
    audio_num_samples,
    compute_span_mask,
    decode_audio,
    normalize_waveform,
    pad_waveforms,
    wav2vec2_config,
)
from mmssl.recipe import AudioConfig, ModelConfig


def wav_bytes(signal: np.ndarray, rate: int) -> bytes:
    """16-bit PCM WAV; ``signal`` is ``[time]`` or ``[time, channels]`` in [-1, 1]."""
    frames = signal if signal.ndim == 2 else signal[:, None]
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(frames.shape[1])
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((frames * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def sine(freq: float, seconds: float, rate: int) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)


def peak_hz(wave_: torch.Tensor, rate: int) -> float:
    spectrum = torch.fft.rfft(wave_).abs()
    return float(spectrum.argmax()) * rate / wave_.numel()


def test_resampling_8k_to_16k_doubles_length_and_keeps_pitch():
    cell = {"bytes": wav_bytes(sine(440, 1.0, 8000), 8000), "path": None}
    out = decode_audio(cell, 16000)
    assert out.shape == (16000,)
    assert peak_hz(out, 16000) == pytest.approx(440, abs=2)
    assert decode_audio(cell, 8000).shape == (8000,)


def test_stereo_is_downmixed_to_mono():
    left = sine(300, 0.5, 16000)
    stereo = np.stack([left, left], axis=1)
    out = decode_audio({"bytes": wav_bytes(stereo, 16000), "path": None}, 16000)
    assert out.ndim == 1 and out.shape == (8000,)
    assert torch.allclose(out, torch.tensor(left, dtype=torch.float32), atol=2e-3)


def test_decoded_array_cells_are_resampled_with_torchaudio():
    cell = {"array": sine(440, 0.5, 8000), "sampling_rate": 8000}
    out = decode_audio(cell, 16000)
    assert out.shape == (8000,)
    assert peak_hz(out, 16000) == pytest.approx(440, abs=3)


def test_training_crop_is_random_and_eval_crop_is_the_centre():
    ramp = np.linspace(-1, 1, 16000 * 2)  # 2 s; each sample value tells its position
    cell = {"bytes": wav_bytes(ramp, 16000), "path": None}
    torch.manual_seed(0)
    crops = [decode_audio(cell, 16000, max_seconds=0.5, random_crop=True) for _ in range(4)]
    assert all(c.shape == (8000,) for c in crops)
    assert len({round(float(c[0]), 3) for c in crops}) > 1
    centre = decode_audio(cell, 16000, max_seconds=0.5, random_crop=False)
    again = decode_audio(cell, 16000, max_seconds=0.5, random_crop=False)
    assert torch.equal(centre, again)
    # the centre half second of a ramp from -1 to 1 is centred on 0
    assert float(centre.mean()) == pytest.approx(0.0, abs=0.01)


def test_preprocess_normalizes_and_rejects_too_short_audio():
    adapter = AudioAdapter(AudioConfig(sampling_rate=16000, max_seconds=1.0, min_seconds=0.2))
    out = adapter.preprocess({"audio": {"bytes": wav_bytes(sine(200, 0.5, 8000), 8000)}, "label": 3})
    values = out["input_values"]
    assert values.shape == (8000,) and out["label"] == 3
    assert float(values.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(values.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="min_seconds=0.2"):
        adapter.preprocess({"audio": {"bytes": wav_bytes(sine(200, 0.1, 8000), 8000)}})


def test_corrupt_audio_raises_in_preprocess_and_has_length_zero():
    adapter = AudioAdapter(AudioConfig())
    cell = {"bytes": b"RIFF not really a wave file", "path": None}
    with pytest.raises(RuntimeError, match="Invalid data"):
        adapter.preprocess({"audio": cell})
    assert audio_num_samples(cell, AudioConfig()) == 0


def test_missing_ffmpeg_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)
    with pytest.raises(AudioBackendError, match="apt-get install ffmpeg"):
        AudioAdapter(AudioConfig())


def test_num_samples_from_header_matches_decoding_and_crop():
    audio = AudioConfig(sampling_rate=16000, max_seconds=1.0)
    short = {"bytes": wav_bytes(sine(200, 0.75, 8000), 8000)}
    long = {"bytes": wav_bytes(sine(200, 3.0, 8000), 8000)}
    assert audio_num_samples(short, audio) == decode_audio(short, 16000).numel() == 12000
    assert audio_num_samples(long, audio) == 16000
    decoded = datasets.Audio().decode_example({**short, "path": None})  # a decoded `datasets` cell
    assert audio_num_samples(decoded, audio) == decode_audio(decoded, 16000).numel() == 12000


def test_normalize_waveform_matches_hand_computation():
    x = torch.tensor([1.0, 2.0, 3.0, 6.0])
    expected = (x - 3.0) / math.sqrt(3.5 + 1e-7)
    assert torch.allclose(normalize_waveform(x), expected)


def test_pad_waveforms_pads_with_zeros_and_masks_padding():
    batch = pad_waveforms(
        [{"input_values": torch.ones(3), "label": 1}, {"input_values": torch.full((5,), 2.0), "label": 0}]
    )
    assert batch["input_values"].tolist() == [[1, 1, 1, 0, 0], [2, 2, 2, 2, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["labels"].tolist() == [1, 0]


# ----------------------------------------------------------------------------- span masks


def test_span_mask_statistics_match_the_paper_rule():
    lengths = torch.full((4000,), 200)
    generator = torch.Generator().manual_seed(0)
    mask = compute_span_mask(lengths, 0.65, 10, generator=generator)
    # 13 spans of 10 among 191 start positions: P(frame t masked) = 1 - C(181,13)/C(191,13)
    # for frames with 10 possible starts covering them (the interior).
    p_free = math.comb(181, 13) / math.comb(191, 13)
    interior = mask[:, 9:191].float().mean().item()
    assert interior == pytest.approx(1 - p_free, abs=0.01)
    # every example got exactly round(0.65 * 200 / 10) = 13 span starts' worth of coverage
    assert (mask.sum(1) >= 10).all() and (mask.sum(1) <= 130).all()


def test_span_mask_probabilistic_rounding_keeps_the_expected_span_count():
    # 0.65 * 25 / 10 = 1.625 spans: 1 or 2 spans, 2 in 62.5% of examples
    lengths = torch.full((4000,), 25)
    mask = compute_span_mask(lengths, 0.65, 10, generator=torch.Generator().manual_seed(1))
    assert set(mask.sum(1).unique().tolist()) <= set(range(10, 21))
    single = (mask.sum(1) == 10).float().mean().item()
    # with two spans they overlap fully (only 16 starts) with probability 1/16
    assert single == pytest.approx(0.375 + 0.625 / 16, abs=0.03)


def test_span_mask_respects_each_example_length():
    lengths = torch.tensor([7, 12, 30, 55, 100, 3, 0])
    for seed in range(50):
        mask = compute_span_mask(
            lengths, 0.65, 5, max_length=120, min_masks=1, generator=torch.Generator().manual_seed(seed)
        )
        assert mask.shape == (7, 120)
        positions = torch.arange(120)[None, :]
        assert not (mask & (positions >= lengths[:, None])).any()
        assert mask[:4].sum(1).ge(5).all()  # min_masks=1 gives every long-enough example a span
        assert mask[5:].sum() == 0  # shorter than one span: nothing to mask


def test_span_mask_is_reproducible_from_the_generator():
    lengths = torch.tensor([40, 80])
    a = compute_span_mask(lengths, 0.65, 10, generator=torch.Generator().manual_seed(3))
    b = compute_span_mask(lengths, 0.65, 10, generator=torch.Generator().manual_seed(3))
    c = compute_span_mask(lengths, 0.65, 10, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ----------------------------------------------------------------------------- sampler


def test_length_grouped_sampler_is_a_seeded_permutation_of_similar_length_batches():
    lengths = torch.randint(1000, 50000, (1003,), generator=torch.Generator().manual_seed(0)).tolist()
    sampler = LengthGroupedSampler(lengths, batch_size=8, seed=5, group_batches=10)
    first = list(sampler)
    assert sorted(first) == list(range(1003))
    assert list(sampler) == first  # same (seed, epoch): same order (resume is exact)
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    batches = sampler.batches()
    assert all(len(b) == 8 for b in batches[:-1]) and len(batches[-1]) == 1003 % 8
    random_order = torch.randperm(1003, generator=torch.Generator().manual_seed(9)).tolist()
    random_batches = [random_order[i : i + 8] for i in range(0, 1000, 8)]
    assert padding_fraction(batches[:-1], lengths) < 0.1 < 0.3 < padding_fraction(random_batches, lengths)


def padding_fraction(batches: list[list[int]], lengths: list[int]) -> float:
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - sum(lengths[i] for b in batches for i in b) / padded


# ----------------------------------------------------------------------------- backbone


@pytest.mark.parametrize("preset", ["nano", "tiny", "small", "base"])
def test_presets_downsample_320x(preset):
    config = wav2vec2_config(ModelConfig(preset=preset))
    assert math.prod(config.conv_stride) == 320
    assert config.feat_extract_norm == "layer" and config.do_stable_layer_norm


def test_nano_backbone_ignores_padding():
    config = wav2vec2_config(ModelConfig(preset="nano"))
    model = Wav2Vec2Model(config).eval()
    short = torch.randn(1, 3200)
    padded = torch.cat([short, torch.zeros(1, 1600)], dim=1)
    mask = torch.cat([torch.ones(1, 3200), torch.zeros(1, 1600)], dim=1).long()
    with torch.no_grad():
        alone = model(short).last_hidden_state
        batched = model(padded, attention_mask=mask).last_hidden_state[:, : alone.shape[1]]
    assert alone.shape[1] == 9  # 3200 -> 639 -> 159 -> 39 -> 9 frames (kernels 10,4,4,4; strides 5,4,4,4)
    assert torch.allclose(alone, batched, atol=1e-4)


def test_unknown_preset_and_field_are_named():
    with pytest.raises(ValueError, match="unknown Wav2Vec2 preset 'huge'"):
        wav2vec2_config(ModelConfig(preset="huge"))
    with pytest.raises(ValueError, match="model.config.not_a_field"):
        wav2vec2_config(ModelConfig(preset="nano", config={"not_a_field": 1}))


def test_fsdd_examples_decode_at_16k(shared_data):
    ds = datasets.load_dataset(
        "parquet", data_files={"train": str(shared_data / "fsdd" / "train.parquet")}, split="train"
    ).cast_column("audio", datasets.Audio(decode=False))
    adapter = AudioAdapter(AudioConfig(sampling_rate=16000, max_seconds=4.0))
    lengths = adapter.example_lengths(ds.select(range(8)))
    for i in range(8):
        out = adapter.preprocess(ds[i], train=False)
        assert out["input_values"].numel() == lengths[i]
        assert 0.2 < lengths[i] / 16000 < 2.5
