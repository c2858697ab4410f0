"""Bad data under ``data.on_bad_example``: planted bad rows are skipped and counted (in the
result, the metrics and the end-of-run report) or stop the run with their index and reason."""

from __future__ import annotations

import io
import json
import logging
import math
import re

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
from mmssl.data.sources import DataError, load_data, row_locator
from mmssl.eval.features import LabelledExamples
from mmssl.recipe import DataConfig, recipe_from_dict
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
    found = re.match(r"example (\d+) \((.*) row (\d+)\): ", message)
    assert found, message
    assert int(found[1]) in BAD_IMAGES and found[3] == found[1]  # one file: its rows are the indices
    assert found[2] == str(planted_images)
    assert "data.on_bad_example=skip" in message
    assert "Error" in message.split("): ", 1)[1]  # the decoder's exception type and message


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


@pytest.mark.slow
def test_a_bad_example_met_in_every_epoch_is_counted_once(tmp_path, planted_images):
    result = pretrain(image_recipe(tmp_path, planted_images, "data.on_bad_example=skip",
                                   "train.epochs=3", "data.max_bad_fraction=0.2"))
    assert result.step == 12
    assert result.bad_examples == len(BAD_IMAGES)  # not 3 epochs x 3


def test_bad_examples_name_their_parquet_file_and_row(tmp_path):
    """Two files: the index runs on across them, the message gives the file's own row."""
    features = datasets.Features({"image": datasets.Image()})
    for name, cells in (("a.parquet", [png(0), png(1)]), ("b.parquet", [png(2), b"not an image", png(3)])):
        datasets.Dataset.from_dict({"image": [{"bytes": c, "path": None} for c in cells]},
                                   features=features).to_parquet(str(tmp_path / name))
    cfg = recipe_from_dict({**TINY_MAE, "data": {"source": "parquet", "data_files": {
        "train": [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]}}}).data
    task = build_task(recipe_from_dict(TINY_MAE))
    data = load_data(cfg, required=("image",))
    examples = MapExamples(data, task.preprocess, "raise", locate=row_locator(cfg))
    with pytest.raises(BadExampleError, match=rf"^example 3 \({re.escape(str(tmp_path / 'b.parquet'))} row 1\): "):
        examples[3]


def test_bad_files_of_a_folder_source_are_named(tmp_path, caplog):
    for label, cells in (("cat", [png(0), png(1)]), ("dog", [png(2), b"GIF89a not really"])):
        (tmp_path / "train" / label).mkdir(parents=True)
        for i, cell in enumerate(cells):
            (tmp_path / "train" / label / f"{i}.png").write_bytes(cell)
    recipe = recipe_from_dict({**TINY_MAE, "data": {"source": "imagefolder", "path": str(tmp_path)}})
    task = build_task(recipe)
    data = load_data(recipe.data, required=("image",))
    bad = next(i for i in range(len(data)) if data[i]["image"]["path"].endswith("dog/1.png"))
    with pytest.raises(BadExampleError, match=rf"^example {bad} \(file .*dog/1.png\): "):
        MapExamples(data, task.preprocess, "raise")[bad]
    with caplog.at_level(logging.WARNING):
        skipped = MapExamples(data, task.preprocess, "skip")[bad]
    assert skipped.index == bad and f"skipping bad example {bad} (file " in caplog.text
    with pytest.raises(BadExampleError, match=rf"^eval example {bad} \(file .*dog/1.png\): "):
        LabelledExamples(task, load_data(recipe.data), "label", "raise")[bad]


def _parquet(path, columns: dict) -> str:
    datasets.Dataset.from_dict(columns).to_parquet(str(path))
    return str(path)


def test_unreadable_data_is_one_line_naming_cause_and_fix(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match=r"empty.txt has no examples \(an empty file\?\): remove"):
        load_data(DataConfig(source="text", data_files={"train": str(tmp_path / "empty.txt")}))
    a = _parquet(tmp_path / "a.parquet", {"x": [1, 2], "label": [0, 1]})
    b = _parquet(tmp_path / "b.parquet", {"y": [1, 2], "label": [0, 1]})
    with pytest.raises(DataError, match=r"do not all have the same columns \(column names don't match\): give"):
        load_data(DataConfig(source="parquet", data_files={"train": [a, b]}))
    with pytest.raises(DataError, match=r"data.path: '.*a.parquet' is a file, but source 'imagefolder' reads "
                                        r"a folder: .*data.data_files.train="):
        load_data(DataConfig(source="imagefolder", path=a))


def test_each_split_reads_only_its_own_files(tmp_path):
    """Train and test files with other columns: no CastError, each split loads alone."""
    files = {"train": _parquet(tmp_path / "train.parquet", {"x": [1, 2], "label": [0, 1]}),
             "test": _parquet(tmp_path / "test.parquet", {"y": [3], "label": [1]})}
    assert load_data(DataConfig(source="parquet", data_files=files)).column_names == ["x", "label"]
    assert load_data(DataConfig(source="parquet", data_files=files, split="test"))["y"] == [3]
