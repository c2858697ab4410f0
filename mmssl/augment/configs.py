"""The ``task.audio_views`` and ``task.text_views`` sections: plain dataclasses, importable
without torch so that recipes validate before any heavy import (``mmssl.augment.audio`` and
``mmssl.augment.text`` apply them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from mmssl.recipe import FiniteFloat, HalfOpenUnitFloat, PositiveFloat, Range, UnitFloat


def _check_range(name: str, values: list[float]) -> None:
    if len(values) != 2 or values[0] > values[1]:
        raise ValueError(f"{name} must be [low, high] with low <= high, got {values}")


@dataclass
class AudioViewConfig:
    """One kind of audio view; each step is applied with its probability."""

    crop_seconds: PositiveFloat | None = 1.0      # None: the whole (decoded) clip
    local_crop_seconds: PositiveFloat = 0.5       # DINO's local views: shorter crops, same steps
    gain_db: list[FiniteFloat] = field(default_factory=lambda: [-6.0, 6.0])
    gain_prob: UnitFloat = 0.8
    noise_snr_db: list[FiniteFloat] = field(default_factory=lambda: [5.0, 30.0])
    noise_prob: UnitFloat = 0.5
    time_mask_prob: UnitFloat = 0.5
    time_mask_fraction: HalfOpenUnitFloat = 0.1       # widest zeroed span, as a fraction of the view
    freq_mask_prob: UnitFloat = 0.5
    freq_mask_fraction: HalfOpenUnitFloat = 0.15      # widest removed band, as a fraction of 0..Nyquist
    n_fft: Annotated[int, Range(4)] = 512
    # BYOL-A's views on the log-mel spectrogram, for the spectrogram encoders only (made in
    # the collator, after the waveform steps above): mix each view with another clip of the
    # batch at a weight drawn from [0, mixup_ratio] (0: off), then a random resized crop
    mixup_ratio: HalfOpenUnitFloat = 0.0
    resized_crop_prob: UnitFloat = 0.0
    resized_crop_time: list[PositiveFloat] = field(default_factory=lambda: [0.6, 1.5])  # crop / clip length
    resized_crop_freq: list[PositiveFloat] = field(default_factory=lambda: [0.6, 1.5])  # crop / mel bins

    @property
    def on_spectrogram(self) -> bool:
        """Whether any step works on the spectrogram (so the encoder must read one)."""
        return self.mixup_ratio > 0 or self.resized_crop_prob > 0

    def __post_init__(self) -> None:
        for name in ("gain_prob", "noise_prob", "time_mask_prob", "freq_mask_prob", "resized_crop_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("time_mask_fraction", "freq_mask_fraction", "mixup_ratio"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if (self.crop_seconds is not None and self.crop_seconds <= 0) or self.local_crop_seconds <= 0:
            raise ValueError("crop_seconds and local_crop_seconds must be positive")
        if self.n_fft < 4:
            raise ValueError(f"n_fft must be at least 4, got {self.n_fft}")
        _check_range("gain_db", self.gain_db)
        _check_range("noise_snr_db", self.noise_snr_db)
        for name in ("resized_crop_time", "resized_crop_freq"):
            _check_range(name, getattr(self, name))
            if getattr(self, name)[0] <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


@dataclass
class TextViewConfig:
    """How a text view is made from the token ids."""

    token_dropout: HalfOpenUnitFloat = 0.1         # each ordinary token is dropped with this probability
    span_deletion_prob: UnitFloat = 0.5    # how often one contiguous span is deleted first
    span_max_fraction: HalfOpenUnitFloat = 0.2     # the longest span, as a fraction of the ordinary tokens

    def __post_init__(self) -> None:
        if not 0.0 <= self.token_dropout < 1.0:
            raise ValueError(f"token_dropout must be in [0, 1), got {self.token_dropout}")
        if not 0.0 <= self.span_deletion_prob <= 1.0:
            raise ValueError(f"span_deletion_prob must be in [0, 1], got {self.span_deletion_prob}")
        if not 0.0 <= self.span_max_fraction < 1.0:
            raise ValueError(f"span_max_fraction must be in [0, 1), got {self.span_max_fraction}")
