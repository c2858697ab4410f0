"""Waveform views for the audio joint-embedding tasks: random crop, gain, additive Gaussian
noise at a random SNR, time masking and frequency masking; and, for the spectrogram encoders,
BYOL-A's views on the log-mel batch (Niizumi et al., 2021): mixup with another clip in the
linear power domain and a random resized crop in time and frequency (``SpectrogramViews``).

They work on the raw (already normalized) waveform, because the towers are ``Wav2Vec2Model``
and read samples, not spectrograms. Every random draw comes from torch's RNG (the global one,
which the loop seeds per example and epoch, or an explicit ``generator``), so a resumed run
replays the same views.

Frequency masking is SpecAugment's, done on the STFT and inverted: the band's bins are
zeroed and ``torch.istft`` (Hann window, hop ``n_fft / 4``, which overlap-adds to a constant)
rebuilds the waveform. That removes the whole band and leaves the rest as it was, at the cost
of one FFT pair. A biquad band-reject filter (``torchaudio.functional.bandreject_biquad``)
was the alternative: it is deep only at its centre frequency, so a band of a chosen width
keeps much of its energy, and its recursion runs sample by sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio.functional as AF

from mmssl.augment.configs import AudioViewConfig


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(high: int, generator: torch.Generator | None) -> int:
    """Uniform in ``[0, high]``, both ends included."""
    return int(torch.randint(0, high + 1, (), generator=generator))


def random_crop(wave: torch.Tensor, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random window of ``length`` samples; a shorter clip is returned whole (never padded)."""
    if wave.numel() <= length:
        return wave
    start = _randint(wave.numel() - length, generator)
    return wave[start : start + length]


def add_noise(wave: torch.Tensor, snr_db: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """White Gaussian noise scaled so that signal power / noise power is ``snr_db``."""
    noise = torch.randn(wave.shape, generator=generator, dtype=wave.dtype)
    return AF.add_noise(wave[None], noise[None], torch.tensor([snr_db], dtype=wave.dtype))[0]


def time_mask(wave: torch.Tensor, max_fraction: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero one span of up to ``max_fraction`` of the samples (its width is uniform too)."""
    width = int(float(torch.rand((), generator=generator)) * max_fraction * wave.numel())
    start = _randint(wave.numel() - width, generator)
    out = wave.clone()
    out[start : start + width] = 0.0
    return out


def band_stop(wave: torch.Tensor, low_bin: int, high_bin: int, n_fft: int) -> torch.Tensor:
    """Remove STFT bins ``[low_bin, high_bin)`` (bin ``k`` is ``k * rate / n_fft`` Hz).

    Clips shorter than ``n_fft`` come back unchanged: their spectrum has no bands to speak of.
    """
    if high_bin <= low_bin or wave.numel() < n_fft:
        return wave
    window = torch.hann_window(n_fft, dtype=wave.dtype)
    spec = torch.stft(wave, n_fft, hop_length=n_fft // 4, window=window, return_complex=True)
    spec[low_bin:high_bin] = 0
    return torch.istft(spec, n_fft, hop_length=n_fft // 4, window=window, length=wave.numel())


def freq_mask(wave: torch.Tensor, max_fraction: float, n_fft: int,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Remove one band of up to ``max_fraction`` of the spectrum, at a uniform position."""
    bins = n_fft // 2 + 1
    width = int(float(torch.rand((), generator=generator)) * max_fraction * bins)
    low = _randint(bins - width, generator)
    return band_stop(wave, low, low + width, n_fft)


class AudioViews:
    """One augmented view of a waveform: crop, then gain, noise, frequency and time masks
    (masks last, so a masked region holds no noise)."""

    def __init__(self, view: AudioViewConfig, sampling_rate: int, crop_seconds: float | None = None) -> None:
        self.view = view
        seconds = crop_seconds if crop_seconds is not None else view.crop_seconds
        self.crop = int(round(seconds * sampling_rate)) if seconds is not None else None

    def __call__(self, wave: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        v = self.view

        def happens(p: float) -> bool:
            return p > 0 and float(torch.rand((), generator=generator)) < p

        if self.crop is not None:
            wave = random_crop(wave, self.crop, generator)
        if happens(v.gain_prob):
            wave = AF.gain(wave, _uniform(*v.gain_db, generator))
        if happens(v.noise_prob):
            wave = add_noise(wave, _uniform(*v.noise_snr_db, generator), generator)
        if happens(v.freq_mask_prob):
            wave = freq_mask(wave, v.freq_mask_fraction, v.n_fft, generator)
        if happens(v.time_mask_prob):
            wave = time_mask(wave, v.time_mask_fraction, generator)
        return wave.contiguous()


def log_mixup_exp(spec: torch.Tensor, other: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``log((1 - w) exp(spec) + w exp(other))`` per example: BYOL-A's mixup, which adds the
    two sounds' powers rather than their log-mels (``weight`` is ``[batch]``)."""
    w = weight.reshape(-1, *([1] * (spec.dim() - 1))).to(spec.dtype)
    return torch.logaddexp(spec + torch.log1p(-w), other + torch.log(w.clamp(min=1e-12)))


def random_resized_crop(spec: torch.Tensor, time_scale: list[float], freq_scale: list[float],
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """A crop of ``[..., T, F]`` of a random size (a uniform fraction of ``T`` and of ``F``) at a
    random place, resized back to ``T x F`` bilinearly. A crop larger than the spectrogram
    takes it on a canvas padded with its minimum (silence), as BYOL-A's virtual crop does."""
    frames, bins = spec.shape[-2:]
    height = max(1, round(frames * _uniform(*time_scale, generator)))
    width = max(1, round(bins * _uniform(*freq_scale, generator)))
    pad_t, pad_f = max(0, height - frames), max(0, width - bins)
    canvas = F.pad(spec, (pad_f // 2, pad_f - pad_f // 2, pad_t // 2, pad_t - pad_t // 2), value=float(spec.min()))
    top = _randint(canvas.shape[-2] - height, generator)
    left = _randint(canvas.shape[-1] - width, generator)
    crop = canvas[..., top : top + height, left : left + width]
    flat = crop.reshape(-1, 1, height, width)
    resized = F.interpolate(flat, size=(frames, bins), mode="bilinear", align_corners=False)
    return resized.reshape(spec.shape)


class SpectrogramViews:
    """BYOL-A's spectrogram steps on a batch ``[batch, ..., T, F]`` of normalized log-mels:
    mixup with another clip of the batch (a random derangement, so never with itself) at a
    weight from ``[0, mixup_ratio]``, then a random resized crop with ``resized_crop_prob``.

    ``offset`` and ``scale`` undo the feature extractor's normalization (``x * scale + offset``
    is the natural-log mel power) so the mixup adds powers. In the collator the draws come
    from torch's global RNG, which the loop has just seeded for the batch's last example.
    """

    def __init__(self, view: AudioViewConfig, offset: float, scale: float) -> None:
        self.view, self.offset, self.scale = view, offset, scale

    def mixup(self, specs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        count = specs.shape[0]
        if self.view.mixup_ratio <= 0 or count < 2:
            return specs
        order = torch.randperm(count, generator=generator)
        partner = torch.empty_like(order)
        partner[order] = order.roll(-1)  # each clip's partner is the next in a random cycle
        weight = torch.rand(count, generator=generator) * self.view.mixup_ratio
        power = specs * self.scale + self.offset
        return (log_mixup_exp(power, power[partner], weight) - self.offset) / self.scale

    def __call__(self, specs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        v = self.view
        specs = self.mixup(specs, generator)
        out = [random_resized_crop(spec, v.resized_crop_time, v.resized_crop_freq, generator)
               if v.resized_crop_prob > 0 and float(torch.rand((), generator=generator)) < v.resized_crop_prob
               else spec for spec in specs]
        return torch.stack(out).contiguous()
