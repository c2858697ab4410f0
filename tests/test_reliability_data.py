"""Bad data under ``data.on_bad_example``: planted bad rows are skipped and counted (in the
result, the metrics and the end-of-run report) or stop the run with their index and reason."""

from __future__ import annotations

import io
import json
import math

import datasets
import numpy as np
import pytest
import scipy.io.wavfile
import torch
from PIL import Image
from test_reliability_faults import TINY_MAE
from torchcodec.encoders import AudioEncoder

from mmssl.commands.pretrain import describe_run_dir
from mmssl.data.examples import BadExampleError, MapExamples, SkippingCollator
from mmssl.data.sources import DataError
from mmssl.recipe import recipe_from_dict
from mmssl.tasks.base import build_task
from mmssl.train.loop import pretrain

BAD_IMAGES = {3: b"\x89PNG\r\n\x1a\n truncated", 17: b"", 26: b"GIF89a not really"}


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (16, 16), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def planted_images(tmp_path_factory):
    """32 images, three of them undecodable, as a parquet file with an Image feature."""
    cells = [{"bytes": BAD_IMAGES[i] if i in BAD_IMAGES else png(i), "path": None} for i in range(32)]
    features = datasets.Features({"img": datasets.Image(), "label": datasets.Value("int64")})
    path = tmp_path_factory.mktemp("planted") / "train.parquet"
    datasets.Dataset.from_dict({"img": cells, "label": list(range(32))}, features=features).to_parquet(str(path))
    return path


def image_recipe(tmp_path, data_file, *overrides):
    base = {**TINY_MAE, "data": {"source": "parquet", "data_files": {"train": str(data_file)},
                                 "columns": {"image": "img"}, "image": {"size": 16}}}
    # one epoch of 4 batches of 8 sees each of the 32 rows exactly once
    train = ["train.max_steps=null", "train.epochs=1", "train.batch_size=8", "train.save_every=0"]
    return recipe_from_dict(base, [f"output_dir={tmp_path / 'run'}", *train, *overrides])


@pytest.mark.slow
def test_undecodable_images_are_skipped_counted_and_reported(tmp_path, planted_images):
    result = pretrain(image_recipe(tmp_path, planted_images, "data.on_bad_example=skip"))
    assert result.step == 4
    assert result.bad_examples == len(BAD_IMAGES)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["bad_examples"] == len(BAD_IMAGES)
    assert rows[-1]["samples_per_s"] > 0
    assert f"Skipped bad examples: {len(BAD_IMAGES)}" in describe_run_dir(result)


def test_undecodable_image_raises_with_its_index_and_reason(tmp_path, planted_images):
    with pytest.raises(BadExampleError) as info:
        pretrain(image_recipe(tmp_path, planted_images, "data.on_bad_example=raise"))
    message = str(info.value)
    index = int(message.split(":")[0].removeprefix("example "))
    assert index in BAD_IMAGES
    assert "data.on_bad_example=skip" in message
    assert "Error" in message.split(":", 1)[1]  # the decoder's exception type and message


def test_a_missing_column_names_the_columns_and_the_fix(tmp_path, planted_images):
    with pytest.raises(DataError, match=r"data.columns.image: no column 'picture' \(the data has \['img', 'label'\]\)"):
        pretrain(image_recipe(tmp_path, planted_images, "data.columns.image=picture"))
    with pytest.raises(DataError, match=r"needs column\(s\) \['image'\].*data.columns.image=<your column>"):
        pretrain(image_recipe(tmp_path, planted_images, "data.columns={}"))


def wav(seconds: float, seed: int) -> bytes:
    wave = 0.3 * torch.randn(1, int(seconds * 8000), generator=torch.Generator().manual_seed(seed))
    return AudioEncoder(wave, sample_rate=8000).to_tensor("wav").numpy().tobytes()


def test_empty_and_truncated_audio_files_follow_the_policy():
    recipe = recipe_from_dict({
        "task": {"name": "wav2vec2", "num_negatives": 10, "mask_length": 4, "min_masks": 1},
        "model": {"preset": "nano"},
        "data": {"source": "parquet", "audio": {"max_seconds": 1.0, "min_seconds": 0.1}},
        "train": {"cpu": True},
    })
    task = build_task(recipe)
    good = wav(0.5, 0)
    cells = [good, b"", good[:30], good[:44], wav(0.4, 1)]  # empty; cut in the header; header only
    features = datasets.Features({"audio": datasets.Audio(decode=False)})
    data = datasets.Dataset.from_dict({"audio": [{"bytes": c, "path": None} for c in cells]}, features=features)

    skipping = MapExamples(data, task.preprocess, "skip")
    batch = SkippingCollator(task.collate)([skipping[i] for i in range(len(cells))])
    assert int(batch["num_bad_examples"]) == 3
    assert batch["input_values"].shape[0] == 2

    raising = MapExamples(data, task.preprocess, "raise")
    assert raising[0]["input_values"].numel() > 0
    for index in (1, 2, 3):
        with pytest.raises(BadExampleError, match=f"^example {index}: "):
            raising[index]


@pytest.mark.parametrize("labels", [
    [f"class {i % 3}" for i in range(16)],             # strings: "too many dimensions 'str'"
    [None if i == 5 else i % 3 for i in range(16)],     # an int column with a gap
], ids=["string", "none"])
def test_pretraining_never_reads_the_label_column(tmp_path, labels):
    cells = [{"bytes": png(i), "path": None} for i in range(16)]
    path = tmp_path / "train.parquet"
    datasets.Dataset.from_dict({"img": cells, "label": labels},
                               features=datasets.Features({"img": datasets.Image(),
                                                           "label": datasets.Value(
                                                               "string" if isinstance(labels[0], str) else "int64")})
                               ).to_parquet(str(path))
    result = pretrain(image_recipe(tmp_path, path, "data.on_bad_example=skip"))
    assert result.step == 2 and result.bad_examples == 0


def float_wav(seconds: float, seed: int, poison: float | None = None) -> bytes:
    """A 32-bit float WAV (which can hold NaN and inf), with one poisoned sample if asked."""
    wave = (0.3 * np.random.default_rng(seed).standard_normal(int(seconds * 8000))).astype(np.float32)
    if poison is not None:
        wave[len(wave) // 2] = poison
    buffer = io.BytesIO()
    scipy.io.wavfile.write(buffer, 8000, wave)
    return buffer.getvalue()


def test_audio_with_nan_or_inf_samples_is_a_bad_example():
    task = build_task(recipe_from_dict({
        "task": {"name": "wav2vec2", "num_negatives": 10, "mask_length": 4, "min_masks": 1},
        "model": {"preset": "nano"},
        "data": {"source": "parquet", "audio": {"max_seconds": 1.0, "min_seconds": 0.1}},
        "train": {"cpu": True},
    }))
    cells = [float_wav(0.5, 0), float_wav(0.5, 1, math.nan), float_wav(0.5, 2, math.inf),
             float_wav(0.5, 3, -math.inf), float_wav(0.5, 4)]
    features = datasets.Features({"audio": datasets.Audio(decode=False)})
    data = datasets.Dataset.from_dict({"audio": [{"bytes": c, "path": None} for c in cells]}, features=features)

    skipping = MapExamples(data, task.preprocess, "skip")
    batch = SkippingCollator(task.collate)([skipping[i] for i in range(len(cells))])
    assert int(batch["num_bad_examples"]) == 3
    assert torch.isfinite(batch["input_values"]).all() and batch["input_values"].shape[0] == 2
    raising = MapExamples(data, task.preprocess, "raise")
    for index in (1, 2, 3):
        with pytest.raises(BadExampleError, match=f"^example {index}: .*NaN or infinite samples"):
            raising[index]
    decoded = {"array": np.array([0.1, math.nan] * 2000, dtype=np.float32), "sampling_rate": 16000}
    with pytest.raises(ValueError, match="NaN or infinite"):
        task.preprocess({"audio": decoded})
