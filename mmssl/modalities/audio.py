"""The audio modality: decode and resample waveforms with torchcodec (FFmpeg), crop and
normalize them, pad batches with attention masks, mask spans of latent frames, and build
Wav2Vec2 configs; :class:`AudioModality` is the ``audio`` entry of ``MODALITIES``.

Decoding happens per example in ``preprocess`` (so a corrupt file is a counted bad example,
not a crash inside the dataset iterator); masking happens on the batch, per example from
its true length, so every epoch sees new masks and padding is never masked.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torchaudio
from torch import nn
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

from mmssl.augment.audio import AudioViews, SpectrogramViews
from mmssl.augment.configs import AudioViewConfig
from mmssl.modalities.base import Modality, Tokens, ViewRequest, register
from mmssl.modalities.configs import make_config, preset_fields
from mmssl.modalities.pooling import masked_mean
from mmssl.recipe import AudioConfig, ModelConfig, Recipe


class AudioBackendError(RuntimeError):
    """torchcodec or the FFmpeg libraries it needs cannot be loaded."""


# ----------------------------------------------------------------------------- backbone

#: 7 conv layers, 320x downsampling (20 ms frames at 16 kHz), as in wav2vec 2.0.
_STANDARD_CONV = dict(conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2))

#: wav2vec 2.0 BASE's feature encoder, positional convolution and quantizer (2 x 320 codes).
_BASE_FRONT_END: dict[str, Any] = dict(
    conv_dim=(512,) * 7, **_STANDARD_CONV,
    num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16,
    num_codevector_groups=2, num_codevectors_per_group=320, codevector_dim=256,
    proj_codevector_dim=256, layerdrop=0.05,
)

#: Wav2Vec2 sizes. ``nano`` (4 conv layers, still 320x, 2 transformer layers of width 64) is
#: for tests and CPU recipes; ``base`` is wav2vec 2.0 BASE. All use layer-normalized convs
#: and pre-LN transformers, so padded batches with attention masks give the same features
#: as unpadded ones (group norm over time, BASE's original choice, would see the padding).
WAV2VEC2_PRESETS: dict[str, dict[str, Any]] = {
    "nano": dict(
        conv_dim=(32, 32, 32, 32), conv_kernel=(10, 4, 4, 4), conv_stride=(5, 4, 4, 4),
        hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        num_codevector_groups=2, num_codevectors_per_group=32, codevector_dim=64,
        proj_codevector_dim=64, layerdrop=0.0,
    ),
    "tiny": dict(
        conv_dim=(256,) * 7, **_STANDARD_CONV,
        hidden_size=256, num_hidden_layers=6, num_attention_heads=4, intermediate_size=1024,
        num_conv_pos_embeddings=64, num_conv_pos_embedding_groups=16,
        num_codevector_groups=2, num_codevectors_per_group=160, codevector_dim=128,
        proj_codevector_dim=128, layerdrop=0.05,
    ),
    "small": dict(
        **_BASE_FRONT_END,
        hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
    ),
    "base": dict(
        **_BASE_FRONT_END,
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    ),
}

_COMMON = dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)


def wav2vec2_config(model: ModelConfig, audio: AudioConfig | None = None) -> Wav2Vec2Config:
    """Wav2Vec2 encoder plus Gumbel quantizer (``Wav2Vec2ForPreTraining`` / ``Wav2Vec2Model``)."""
    base = {**_COMMON, **preset_fields(WAV2VEC2_PRESETS, model.preset, "Wav2Vec2")}
    return make_config(Wav2Vec2Config, base, model.config)


def wav2vec2_processor(audio: AudioConfig) -> Wav2Vec2FeatureExtractor:
    """Raw waveform at the recipe's rate, normalized per utterance, padded with a mask."""
    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=audio.sampling_rate,
        padding_value=0.0,
        do_normalize=audio.normalize,
        return_attention_mask=True,
    )


def frame_lengths(model: nn.Module, attention_mask: torch.Tensor) -> torch.Tensor:
    """Latent frames of each example: the conv stack's output length of its real samples."""
    return model._get_feat_extract_output_lengths(attention_mask.sum(dim=-1)).long()


def num_frames(model: nn.Module, num_samples: int) -> int:
    """Latent frames of a padded batch ``num_samples`` long."""
    return int(model._get_feat_extract_output_lengths(torch.tensor(num_samples)))


def valid_frames(model: nn.Module, attention_mask: torch.Tensor) -> torch.Tensor:
    """``[batch, frames]`` bool: the latent frames that come from real samples, not padding."""
    total = num_frames(model, attention_mask.shape[1])
    return torch.arange(total, device=attention_mask.device)[None, :] < frame_lengths(model, attention_mask)[:, None]


# ----------------------------------------------------------------------------- decoding


def audio_decoder_class() -> type:
    """torchcodec's ``AudioDecoder``, or an error that says which system package is missing."""
    try:
        from torchcodec.decoders import AudioDecoder
    except (ImportError, OSError, RuntimeError) as err:
        raise AudioBackendError(
            "cannot load torchcodec, which decodes audio with the FFmpeg libraries: install "
            "FFmpeg (Debian/Ubuntu: `apt-get install ffmpeg`; macOS: `brew install ffmpeg`; "
            f"conda: `conda install -c conda-forge ffmpeg`) and `pip install torchcodec`. ({err})"
        ) from err
    return AudioDecoder


def _source(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"]
        if value.get("path"):
            return value["path"]
        raise ValueError("empty audio cell (no bytes, no path, no array)")
    if isinstance(value, str):
        return value
    if value is None:
        raise ValueError("missing audio (None)")
    raise ValueError(f"cannot read audio from {type(value).__name__}")


def _crop_start(duration: float, crop: float, random_crop: bool) -> float:
    """Random offset in training, the centre crop in evaluation (deterministic)."""
    spare = max(duration - crop, 0.0)
    return float(torch.rand(()).item()) * spare if random_crop else spare / 2


def _from_array(value: dict, sampling_rate: int) -> torch.Tensor:
    wave = torch.as_tensor(value["array"], dtype=torch.float32)
    if wave.ndim == 2:  # (channels, time) -> mono
        wave = wave.mean(dim=0)
    if int(value["sampling_rate"]) != sampling_rate:
        wave = torchaudio.functional.resample(wave, int(value["sampling_rate"]), sampling_rate)
    return wave


def decode_audio(
    value: Any,
    sampling_rate: int,
    max_seconds: float | None = None,
    random_crop: bool = True,
) -> torch.Tensor:
    """A mono float waveform at ``sampling_rate`` from a ``datasets`` Audio cell.

    Accepts undecoded cells (``{"bytes", "path"}``), decoded ones (``{"array",
    "sampling_rate"}`` or a torchcodec decoder) and file paths. FFmpeg resamples while
    decoding; channels are averaged. Longer audio is cut to ``max_seconds``: only the cropped
    range is decoded when the header knows the duration. NaN or infinite samples (a float
    WAV can hold them) are an error here, so a bad example, not a non-finite loss later.
    """
    AudioDecoder = audio_decoder_class()
    if isinstance(value, dict) and value.get("array") is not None:
        wave = _from_array(value, sampling_rate)
    else:
        decoder = (  # a decoded `datasets` cell is already a decoder; resampled below
            value if isinstance(value, AudioDecoder)
            else AudioDecoder(_source(value), sample_rate=sampling_rate)
        )
        duration = decoder.metadata.duration_seconds_from_header
        if max_seconds and duration and duration > max_seconds:
            start = _crop_start(duration, max_seconds, random_crop)
            samples = decoder.get_samples_played_in_range(start, start + max_seconds)
        else:
            samples = decoder.get_all_samples()
        wave = samples.data.mean(dim=0)
        if samples.sample_rate != sampling_rate:
            wave = torchaudio.functional.resample(wave, samples.sample_rate, sampling_rate)
    if max_seconds:
        crop = int(round(max_seconds * sampling_rate))
        if wave.numel() > crop:
            offset = int(_crop_start(wave.numel(), crop, random_crop))
            wave = wave[offset : offset + crop]
    bad = int((~torch.isfinite(wave)).sum())
    if bad:
        raise ValueError(f"the audio has {bad} NaN or infinite samples")
    return wave.contiguous()


def normalize_waveform(wave: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Zero mean, unit variance per utterance, as ``Wav2Vec2FeatureExtractor(do_normalize=True)``."""
    return (wave - wave.mean()) / torch.sqrt(wave.var(unbiased=False) + eps)


def audio_num_samples(value: Any, audio: AudioConfig) -> int:
    """The length in samples ``preprocess`` will give, from the file header (0 if unreadable).

    For length-grouped batching; a file that cannot be opened gets 0 here and fails later
    in ``preprocess``, where the bad-example policy judges it.
    """
    try:
        AudioDecoder = audio_decoder_class()
        if isinstance(value, dict) and value.get("array") is not None:
            seconds = len(value["array"]) / int(value["sampling_rate"])
        else:
            decoder = value if isinstance(value, AudioDecoder) else AudioDecoder(_source(value))
            seconds = decoder.metadata.duration_seconds_from_header
            if seconds is None:
                seconds = decode_audio(value, audio.sampling_rate).numel() / audio.sampling_rate
    except AudioBackendError:
        raise
    except Exception:
        return 0
    if audio.max_seconds:
        seconds = min(seconds, audio.max_seconds)
    return int(round(seconds * audio.sampling_rate))


# ----------------------------------------------------------------------------- adapter


class AudioAdapter:
    """Preprocess and collate audio examples for one recipe's audio settings."""

    def __init__(self, audio: AudioConfig) -> None:
        if audio.min_seconds > audio.max_seconds:
            raise ValueError(
                f"data.audio.min_seconds ({audio.min_seconds}) is above max_seconds ({audio.max_seconds})"
            )
        audio_decoder_class()  # fail before training, not once per example, without FFmpeg
        self.audio = audio

    def preprocess(self, example: dict[str, Any], train: bool = True) -> dict[str, Any]:
        cfg = self.audio
        wave = decode_audio(example["audio"], cfg.sampling_rate, cfg.max_seconds, random_crop=train)
        seconds = wave.numel() / cfg.sampling_rate
        if seconds < cfg.min_seconds:
            raise ValueError(
                f"audio is {seconds:.3f} s long, shorter than data.audio.min_seconds={cfg.min_seconds}"
            )
        if cfg.normalize:
            wave = normalize_waveform(wave)
        out: dict[str, Any] = {"input_values": wave}
        if "label" in example:
            out["label"] = example["label"]
        return out

    def example_lengths(self, dataset: Any) -> list[int]:
        """Samples per example after cropping, from the file headers (for length grouping)."""
        return [audio_num_samples(value, self.audio) for value in dataset["audio"]]

    @staticmethod
    def collate(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return pad_waveforms(examples)


def pad_waveforms(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Right-pad ``input_values`` with zeros; ``attention_mask`` is 1 on real samples."""
    waves = [ex["input_values"] for ex in examples]
    lengths = torch.tensor([w.numel() for w in waves])
    values = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    mask = (torch.arange(values.shape[1])[None, :] < lengths[:, None]).long()
    batch = {"input_values": values, "attention_mask": mask}
    if examples and "label" in examples[0]:
        batch["labels"] = torch.tensor([ex["label"] for ex in examples])
    return batch


# ----------------------------------------------------------------------------- masking


def compute_span_mask(
    lengths: torch.Tensor,
    mask_prob: float,
    mask_length: int,
    max_length: int | None = None,
    min_masks: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """wav2vec 2.0 span masking of latent frames, per example from its true length.

    An example of ``L`` frames gets ``round_random(mask_prob * L / mask_length)`` spans
    (at least ``min_masks``) of ``mask_length`` frames, starting at distinct positions drawn
    uniformly from ``[0, L - mask_length]``; spans may overlap, so about 49% of frames are
    masked at the defaults (0.65, 10), as in the paper. Frames at or past ``L`` are never
    masked; an example shorter than ``mask_length`` is not masked at all.
    Returns a bool tensor ``[batch, max_length]``; draws from ``generator`` (or the global
    RNG) on the device of ``lengths``.
    """
    if mask_length < 1:
        raise ValueError(f"mask_length must be at least 1, got {mask_length}")
    lengths = lengths.long()
    device = lengths.device
    batch = lengths.shape[0]
    total = int(lengths.max().item()) if max_length is None else max_length
    if total == 0 or batch == 0:
        return torch.zeros(batch, total, dtype=torch.bool, device=device)
    starts_possible = (lengths - mask_length + 1).clamp(min=0)
    wanted = mask_prob * lengths.float() / mask_length
    jitter = torch.rand(batch, generator=generator, device=device)
    num_spans = torch.floor(wanted + jitter).long().clamp(min=min_masks)
    num_spans = torch.minimum(num_spans, starts_possible)
    positions = max(total - mask_length + 1, 1)
    scores = torch.rand(batch, positions, generator=generator, device=device)
    valid = torch.arange(positions, device=device)[None, :] < starts_possible[:, None]
    scores = torch.where(valid, scores, torch.full_like(scores, 2.0))
    rank = scores.argsort(dim=1).argsort(dim=1)
    starts = rank < num_spans[:, None]
    mask = torch.zeros(batch, total, dtype=torch.bool, device=device)
    for offset in range(min(mask_length, total)):
        width = min(positions, total - offset)
        mask[:, offset : offset + width] |= starts[:, :width]
    return mask



# ----------------------------------------------------------------------------- modality


@register
class AudioModality(Modality):
    """Waveforms from the ``audio`` column: each example is decoded and normalized once (the
    audio adapter), then each view crops and augments that waveform (``task.audio_views``;
    local views are shorter crops); views are padded with attention masks, and spectrogram
    encoders get each padded batch as fixed-length log-mel features (``Backbone.featurize``),
    then BYOL-A's spectrogram steps when the recipe asks for them (``SpectrogramViews``).
    Masked prediction runs on Wav2Vec2's latent frames: wav2vec 2.0 span masks (data2vec
    1.0), frames from padding never real."""

    name = "audio"
    column = "audio"
    default_backbone = "wav2vec2"
    pad_values = {"input_values": 0.0, "attention_mask": 0}

    def __init__(self, recipe: Recipe, backbone: str | None = None, views: ViewRequest | None = None,
                 corpus: Any = None) -> None:
        super().__init__(recipe, backbone, views)
        self.adapter = AudioAdapter(recipe.data.audio)
        if views is not None:
            audio, rate = recipe.task.audio_views, recipe.data.audio.sampling_rate
            local = replace(audio, crop_seconds=audio.local_crop_seconds)
            self.views = [AudioViews(audio, rate)] * views.count + [AudioViews(local, rate)] * views.num_local
        self.spectrogram_views = self._spectrogram_views(recipe.task.audio_views) if views is not None else None

    def _spectrogram_views(self, view: AudioViewConfig) -> SpectrogramViews | None:
        if not view.on_spectrogram:
            return None
        if not self.backbone.featurize:
            raise ValueError(f"task.audio_views.mixup_ratio/resized_crop_prob work on log-mel spectrograms; "
                             f"model.backbone={self.backbone.name} reads waveforms (use ast or logmel_resnet)")
        extractor = self.backbone.processor(self.recipe.data)
        return SpectrogramViews(view, offset=float(extractor.mean), scale=2 * float(extractor.std))

    def example_lengths(self, dataset: Any) -> list[int]:
        return self.adapter.example_lengths(dataset)

    def preprocess(self, example: dict[str, Any], train: bool = True) -> dict[str, Any]:
        return self.adapter.preprocess(example, train)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Padded waveforms, or the backbone's features of them (log-mel spectrograms)."""
        batch = self.adapter.collate(items)
        featurize = self.backbone.featurize
        return featurize(batch, self.recipe.data) if featurize else batch

    def collate_views(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """The view batches; each spectrogram view batch then gets the spectrogram steps."""
        batch = super().collate_views(examples)
        if self.spectrogram_views is not None:
            for name in [n for n in batch if n.endswith(("_pixel_values", "_input_values"))]:
                batch[name] = self.spectrogram_views(batch[name])
        return batch

    def augment(self, example: dict[str, Any]) -> list[torch.Tensor]:
        wave = self.adapter.preprocess(example, train=True)["input_values"]
        return [{"input_values": view(wave)} for view in self.views]

    def adopt_tower_encoder(self, model: nn.Module, pooling: str) -> nn.Module:
        return model if isinstance(model, Wav2Vec2Model) else getattr(model, "wav2vec2", model)

    def tower_features(self, encoder: nn.Module, batch: dict[str, torch.Tensor], pooling: str) -> torch.Tensor:
        """Masked mean over the real frames, or the first frame (``cls``). Unlike the view
        tasks' pooling, a tower leaves Wav2Vec2's own time masking on in training."""
        mask = batch.get("attention_mask")
        hidden = encoder(input_values=batch["input_values"], attention_mask=mask).last_hidden_state
        if pooling == "cls":
            return hidden[:, 0]
        return masked_mean(hidden, None if mask is None else valid_frames(encoder, mask))

    def token_encoder(self, mask_token: bool) -> nn.Module:
        return self.build_encoder()

    def token_mask(self, encoder: nn.Module, batch: dict[str, torch.Tensor], cfg: Any) -> torch.Tensor:
        """Spans of ``cfg.mask_length`` frames (``cfg.mask_prob``, at least ``cfg.min_masks``)."""
        attention = batch["attention_mask"]
        lengths, total = frame_lengths(encoder, attention), num_frames(encoder, attention.shape[1])
        return compute_span_mask(lengths, cfg.mask_prob, cfg.mask_length, total, cfg.min_masks)

    def masked_token_states(self, encoder: nn.Module, batch: dict[str, torch.Tensor],
                            mask: torch.Tensor) -> torch.Tensor:
        return _run(encoder, batch, mask).last_hidden_state

    def token_states(self, encoder: nn.Module, batch: dict[str, torch.Tensor]
                     ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        valid = valid_frames(encoder, batch["attention_mask"])
        # an explicit empty mask: without one the model would draw its own SpecAugment mask
        out = _run(encoder, batch, torch.zeros_like(valid), output_hidden_states=True)
        return out.hidden_states[1:], valid

    def token_features(self, encoder: nn.Module, batch: dict[str, torch.Tensor], pooling: str) -> torch.Tensor:
        if pooling != "mean":
            raise ValueError(f"eval.pooling={pooling!r}: Wav2Vec2 has no CLS token; use 'mean'")
        valid = valid_frames(encoder, batch["attention_mask"])
        return masked_mean(_run(encoder, batch, torch.zeros_like(valid)).last_hidden_state, valid)

    def token_embeddings(self, encoder: nn.Module, batch: dict[str, torch.Tensor]) -> Tokens:
        """The conv feature encoder and projection on the whole clip (frames of padding not real)."""
        features = encoder.feature_extractor(batch["input_values"]).transpose(1, 2)
        hidden, _ = encoder.feature_projection(features)
        return hidden, valid_frames(encoder, batch["attention_mask"]), None

    def encode_tokens(self, encoder: nn.Module, x: torch.Tensor, attend: torch.Tensor,
                      prefix: torch.Tensor | None) -> torch.Tensor:
        """The kept frames through the transformer (its convolutional positions see only those)."""
        return encoder.encoder(x, attention_mask=attend).last_hidden_state


def _run(encoder: nn.Module, batch: dict[str, torch.Tensor], mask: torch.Tensor, **kwargs: Any) -> Any:
    """Wav2Vec2 with the time mask ``mask`` (masked frames replaced by its mask embedding)."""
    return encoder(batch["input_values"], attention_mask=batch["attention_mask"], mask_time_indices=mask, **kwargs)
