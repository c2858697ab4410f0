"""Log-mel spectrograms for the spectrogram encoders, made by the feature extractor an
export carries (transformers' ``ASTFeatureExtractor``: Kaldi filterbanks, 25 ms windows
every 10 ms, normalized by AudioSet's mean and spread, padded or cut to a fixed length).

The training views stay waveforms (``mmssl.augment.audio``); the collator turns each
padded view batch into spectrograms, so training, evaluation and a user of the export
compute the same input.
"""

from __future__ import annotations

import math

import torch
from transformers import ASTFeatureExtractor

from mmssl.recipe import DataConfig

#: frames per second of the Kaldi filterbank (10 ms shift).
FRAMES_PER_SECOND = 100


def max_frames(data: DataConfig) -> int:
    """Frames of ``data.audio.max_seconds`` of audio: every spectrogram is padded to it."""
    return math.ceil(data.audio.max_seconds * FRAMES_PER_SECOND)


def logmel_extractor(data: DataConfig) -> ASTFeatureExtractor:
    audio = data.audio
    return ASTFeatureExtractor(sampling_rate=audio.sampling_rate, num_mel_bins=audio.num_mel_bins,
                               max_length=max_frames(data), do_normalize=True)


def featurize_logmel(batch: dict[str, torch.Tensor], data: DataConfig) -> dict[str, torch.Tensor]:
    """``input_values`` ``[batch, frames, mels]`` from a padded waveform batch (its real samples)."""
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    waves = [wave[:length].numpy() for wave, length in zip(batch["input_values"], lengths)]
    extractor = logmel_extractor(data)
    features = extractor(waves, sampling_rate=data.audio.sampling_rate, return_tensors="pt")["input_values"]
    out = {k: v for k, v in batch.items() if k not in ("input_values", "attention_mask")}
    out["input_values"] = features
    return out
