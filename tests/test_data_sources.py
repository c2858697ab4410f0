"""Data sources: local parquet with features, imagefolder, streaming, column mapping."""

from __future__ import annotations

import datasets
import pytest
import torch
from PIL import Image

from mmssl.data.examples import BadExampleError, MapExamples, SkippingCollator, example_seed
from mmssl.data.sources import DataError, load_data
from mmssl.modalities.vision import VisionAdapter
from mmssl.recipe import DataConfig, ImageConfig


def cifar(shared_data, **kw) -> DataConfig:
    files = {"train": str(shared_data / "cifar10" / "train.parquet"),
             "test": str(shared_data / "cifar10" / "test.parquet")}
    return DataConfig(source="parquet", data_files=files, **kw)


def test_parquet_split_keeps_features_and_leaves_images_undecoded(shared_data):
    ds = load_data(cifar(shared_data, split="test"), required=("image", "label"))
    assert len(ds) == 2000
    assert isinstance(ds.features["label"], datasets.ClassLabel)
    assert ds.features["label"].num_classes == 10
    cell = ds[0]["image"]
    assert isinstance(cell, dict) and cell["bytes"][:2] == b"\xff\xd8"  # JPEG, decoded later


def test_column_mapping_and_missing_roles(shared_data):
    cfg = cifar(shared_data, split="test", columns={"image": "image", "target": "label"})
    assert "target" in load_data(cfg).column_names
    with pytest.raises(DataError, match=r"data.columns.image: no column 'img'"):
        load_data(cifar(shared_data, split="test", columns={"image": "img"}))
    with pytest.raises(DataError, match=r"needs column\(s\) \['text'\].*data.columns.text"):
        load_data(cifar(shared_data, split="test"), required=("text",))


def test_unknown_split_and_source_and_file(shared_data, tmp_path):
    with pytest.raises(DataError, match="data.split"):
        load_data(cifar(shared_data, split="validation"))
    with pytest.raises(DataError, match="unknown data source 'parquett'; did you mean 'parquet'"):
        load_data(DataConfig(source="parquett"))
    with pytest.raises(DataError, match="no such file"):
        load_data(DataConfig(source="parquet", data_files={"train": str(tmp_path / "x.parquet")}))


def test_streaming_yields_the_same_examples(shared_data):
    stream = load_data(cifar(shared_data, split="test", streaming=True, max_examples=5))
    assert isinstance(stream, datasets.IterableDataset)
    rows = list(stream)
    table = load_data(cifar(shared_data, split="test", max_examples=5))
    assert [r["label"] for r in rows] == table["label"]
    assert rows[0]["image"]["bytes"] == table[0]["image"]["bytes"]


def test_imagefolder_with_a_corrupt_file(tmp_path):
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.new("RGB", (20, 20), (i * 40, 10, 10)).save(tmp_path / label / f"{i}.png")
    (tmp_path / "dog" / "broken.png").write_bytes(b"not a png at all")
    cfg = DataConfig(source="imagefolder", path=str(tmp_path), holdout_fraction=0.0)
    ds = load_data(cfg, required=("image", "label"))
    assert len(ds) == 7
    adapter = VisionAdapter(ImageConfig(size=16))
    broken = next(i for i in range(len(ds)) if ds[i]["image"]["path"].endswith("broken.png"))

    strict = MapExamples(ds, adapter.preprocess, "raise")
    with pytest.raises(BadExampleError, match=rf"example {broken} \(file .*broken.png\): .*data.on_bad_example=skip"):
        strict[broken]

    lenient = MapExamples(ds, adapter.preprocess, "skip")
    batch = SkippingCollator(adapter.collate)([lenient[i] for i in range(len(ds))])
    assert batch["pixel_values"].shape == (6, 3, 16, 16)
    assert int(batch["num_bad_examples"]) == 1


def test_augmentations_depend_on_seed_epoch_and_index_only(shared_data):
    ds = load_data(cifar(shared_data, split="test", max_examples=4))
    adapter = VisionAdapter(ImageConfig(size=16))
    examples = MapExamples(ds, adapter.preprocess, "raise", seed=3)
    first = examples[1]["pixel_values"]
    torch.manual_seed(123)  # the global RNG does not matter
    assert torch.equal(examples[1]["pixel_values"], first)
    examples.set_epoch(1)
    assert not torch.equal(examples[1]["pixel_values"], first)


def test_example_views_are_those_of_a_manual_seed_and_leave_the_global_rng_alone(shared_data):
    """Seeding only the CPU generator (the fast path) draws exactly the views that
    ``torch.manual_seed(example_seed(...))`` drew, so runs and pinned losses stay the same."""
    ds = load_data(cifar(shared_data, split="test", max_examples=4))
    adapter = VisionAdapter(ImageConfig(size=16))
    examples = MapExamples(ds, adapter.preprocess, "raise", seed=3)
    examples.set_epoch(2)
    torch.manual_seed(7)
    before = torch.get_rng_state()
    views = examples[1]["pixel_values"]
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(example_seed(3, 2, 1))
    assert torch.equal(adapter.preprocess(ds[1])["pixel_values"], views)


def test_hub_source_passes_id_config_split_and_streaming(monkeypatch):
    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        return datasets.Dataset.from_dict({"img": [None], "label": [0]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    cfg = DataConfig(source="hub", path="user/pets", name="small", split="train[:10%]",
                     columns={"image": "img"})
    ds = load_data(cfg, required=("image",))
    assert calls == [("user/pets", "small", {"data_files": None, "split": "train[:10%]",
                                             "streaming": False})]
    assert ds.column_names == ["image", "label"]
    with pytest.raises(DataError, match="the Hub dataset id is required"):
        load_data(DataConfig(source="hub"))
