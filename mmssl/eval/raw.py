"""The raw-input baseline: features made from the input itself, with no model.

A pretrained encoder is worth its compute only if a probe on its features beats a probe on
the data alone, so every report scores the same protocols on these features too:

- images: the pixels, resized to ``RAW_IMAGE_SIZE`` x ``RAW_IMAGE_SIZE`` (bilinear), in [0, 1],
  flattened (``channels * 32 * 32`` values);
- audio: the mean and standard deviation over time of each of ``RAW_MEL_BANDS`` log-mel bands
  (torchaudio, 25 ms windows, 10 ms hop, at the recipe's sampling rate): ``2 * 64`` values;
- text: TF-IDF of word 1- and 2-grams (scikit-learn, sublinear tf, terms in at least two
  training texts, the ``RAW_TFIDF_FEATURES`` most frequent), fitted on the training split.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torchaudio
from sklearn.feature_extraction.text import TfidfVectorizer
from torchvision.transforms.v2 import functional as TF

from mmssl.data.examples import BadExampleError
from mmssl.eval.features import Features
from mmssl.modalities.audio import decode_audio
from mmssl.modalities.vision import decode_image
from mmssl.recipe import DataConfig

RAW_IMAGE_SIZE = 32
RAW_MEL_BANDS = 64
RAW_TFIDF_FEATURES = 8192


def image_pixels(value: Any, channels: int = 3) -> torch.Tensor:
    """Pixels in [0, 1] at ``RAW_IMAGE_SIZE`` squared, flattened."""
    image = TF.pil_to_tensor(decode_image(value, channels))
    image = TF.resize(image, [RAW_IMAGE_SIZE, RAW_IMAGE_SIZE], antialias=True)
    return image.float().div(255.0).flatten()


def log_mel_statistics(value: Any, sampling_rate: int, max_seconds: float | None = None) -> torch.Tensor:
    """Per-band mean then per-band standard deviation over time of the log-mel spectrogram."""
    wave = decode_audio(value, sampling_rate, max_seconds, random_crop=False)
    window = round(0.025 * sampling_rate)
    mel = torchaudio.transforms.MelSpectrogram(
        sampling_rate, n_fft=window, win_length=window, hop_length=round(0.010 * sampling_rate),
        n_mels=RAW_MEL_BANDS,
    )(wave)
    log_mel = torch.log(mel + 1e-6)
    return torch.cat([log_mel.mean(dim=-1), log_mel.std(dim=-1, unbiased=False)])


def tfidf_features(train_texts: list[str], test_texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """TF-IDF (1-2 grams) fitted on the training texts, as dense float32 matrices."""
    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2), min_df=2, max_features=RAW_TFIDF_FEATURES, sublinear_tf=True, dtype=np.float32
    )
    train = vectorizer.fit_transform(train_texts)
    test = vectorizer.transform(test_texts)
    return torch.from_numpy(train.toarray()), torch.from_numpy(test.toarray())


def _per_example(encode: Callable[[Any], torch.Tensor], data: Any, column: str, label: str,
                 policy: str) -> Features:
    """``encode`` on every cell; a failing example raises with its index or is skipped."""
    xs, ys, rows = [], [], []
    for index in range(len(data)):
        example = data[index]
        try:
            xs.append(encode(example[column]))
        except Exception as err:  # user data: judged by the bad-example policy
            if policy == "raise":
                raise BadExampleError(
                    f"raw-input example {index}: {type(err).__name__}: {err} "
                    "(set data.on_bad_example=skip to skip such examples)"
                ) from err
            continue
        ys.append(int(example[label]))
        rows.append(index)
    if not xs:
        raise ValueError(f"raw input: no usable examples (all {len(data)} failed)")
    index = torch.tensor(rows, dtype=torch.long)
    return Features(torch.stack(xs), torch.tensor(ys, dtype=torch.long), index, len(data) - len(index))


def _text_features(train: Any, test: Any, column: str, label: str) -> tuple[Features, Features]:
    texts = [[t if isinstance(t, str) else "" for t in split[column]] for split in (train, test)]
    x_train, x_test = tfidf_features(*texts)
    return tuple(
        Features(x, torch.tensor(split[label], dtype=torch.long), torch.arange(len(split)))
        for x, split in ((x_train, train), (x_test, test))
    )


def raw_input_features(
    modality: str, column: str, data: DataConfig, train: Any, test: Any, label: str, policy: str = "raise"
) -> tuple[Features, Features] | None:
    """Raw-input features of the training and test splits, or ``None`` for a modality
    without a raw-input baseline."""
    if modality == "text":
        return _text_features(train, test, column, label)
    encoders: dict[str, Callable[[Any], torch.Tensor]] = {
        "vision": lambda value: image_pixels(value, data.image.channels),
        "audio": lambda value: log_mel_statistics(value, data.audio.sampling_rate, data.audio.max_seconds),
    }
    if modality not in encoders:
        return None
    return tuple(_per_example(encoders[modality], split, column, label, policy) for split in (train, test))
