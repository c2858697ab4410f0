"""Folder sources hold out a seeded test split; ``--data`` takes any data mapping."""

from __future__ import annotations

import json

import pytest
import yaml
from PIL import Image

from mmssl.cli import main
from mmssl.data.sources import DataError, load_data
from mmssl.data.spec import data_mapping
from mmssl.recipe import DataConfig


def image_folder(root, per_class: int = 10, classes=("cat", "dog")):
    for c, label in enumerate(classes):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (8, 8), (c * 200, i * 20, 0)).save(root / label / f"{i}.png")
    return root


def paths(ds) -> set[str]:
    return {row["image"]["path"] for row in ds}


def test_a_folder_without_a_test_split_holds_out_a_seeded_stratified_fraction(tmp_path):
    folder = str(image_folder(tmp_path / "pets"))
    cfg = DataConfig(source="imagefolder", path=folder, holdout_fraction=0.2)
    train, test = load_data(cfg), load_data(DataConfig(**{**vars(cfg), "split": "test"}))
    assert (len(train), len(test)) == (16, 4)
    assert not paths(train) & paths(test)
    assert sorted(test["label"]) == [0, 0, 1, 1]  # stratified by the folder's classes
    assert paths(load_data(cfg)) == paths(train)  # the same seed, the same split
    other = load_data(DataConfig(source="imagefolder", path=folder, holdout_fraction=0.2, holdout_seed=1))
    assert paths(other) != paths(train)
    streamed = load_data(DataConfig(source="imagefolder", path=folder, holdout_fraction=0.2, streaming=True))
    assert paths(streamed) == paths(train)


def test_a_test_split_of_its_own_is_used_as_it_is(tmp_path):
    image_folder(tmp_path / "train")
    image_folder(tmp_path / "test", per_class=3)
    cfg = DataConfig(source="imagefolder", path=str(tmp_path))
    assert len(load_data(cfg)) == 20
    assert len(load_data(DataConfig(source="imagefolder", path=str(tmp_path), split="test"))) == 6


def test_text_files_hold_out_lines_and_zero_turns_it_off(tmp_path):
    lines = tmp_path / "news.txt"
    lines.write_text("\n".join(f"line number {i}" for i in range(50)) + "\n")
    cfg = {"source": "text", "data_files": {"train": str(lines)}}
    train, test = load_data(DataConfig(**cfg)), load_data(DataConfig(**cfg, split="test"))
    assert (len(train), len(test)) == (45, 5) and not set(train["text"]) & set(test["text"])
    assert len(load_data(DataConfig(**cfg, holdout_fraction=0.0))) == 50
    both = {"source": "text", "data_files": {"train": str(lines), "test": str(lines)}}
    assert len(load_data(DataConfig(**both))) == 50  # a test file of its own: nothing held out
    with pytest.raises(DataError, match="data.split"):
        load_data(DataConfig(**cfg, holdout_fraction=0.0, split="test"))


def test_data_specs_become_data_mappings(tmp_path):
    base = {"source": "parquet", "data_files": {"train": "a.parquet"}, "columns": {"image": "img"},
            "on_bad_example": "skip"}
    hub = data_mapping("user/pets", base)
    assert hub == {"source": "hub", "path": "user/pets", "columns": {"image": "img"}, "on_bad_example": "skip"}
    assert data_mapping(["user/pets", "split=validation", "columns.label=breed"], base)["columns"] == {
        "image": "img", "label": "breed"}
    assert data_mapping("{source: imagefolder, path: photos}", base)["source"] == "imagefolder"
    assert data_mapping({"source": "csv", "data_files": {"train": "x.csv"}}, base)["data_files"] == {
        "train": "x.csv"}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"task": {"name": "mae"}, "data": {"source": "hub", "path": "a/b"}}))
    assert data_mapping(str(recipe), base)["path"] == "a/b"
    assert data_mapping(str(image_folder(tmp_path / "pets")), base)["source"] == "imagefolder"
    for split in ("train", "test"):
        (tmp_path / f"{split}.parquet").write_bytes(b"")
    assert data_mapping(str(tmp_path), base)["data_files"] == {
        "test": str(tmp_path / "test.parquet"), "train": str(tmp_path / "train.parquet")}
    with pytest.raises(DataError, match="not a data mapping, folder, file or Hub dataset id"):
        data_mapping("./missing/folder", base)
    (tmp_path / "list.yaml").write_text("[1, 2]\n")
    with pytest.raises(DataError, match="expected a mapping"):
        data_mapping(str(tmp_path / "list.yaml"), base)


@pytest.mark.slow
def test_mmssl_eval_on_an_image_folder_without_a_test_split(tmp_path, capsys):
    from test_eval_cli import tiny_recipe

    run_dir = tmp_path / "run"
    recipe = tiny_recipe(run_dir)
    recipe["train"]["max_steps"] = 1
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["pretrain", str(tmp_path / "recipe.yaml")]) == 0
    folder = image_folder(tmp_path / "pets")
    assert main(["eval", str(run_dir), "--data", str(folder), "--data", "holdout_fraction=0.2",
                 "--protocol", "knn", "label_fractions=[1.0]", "knn_k=3", "val_fraction=0.2"]) == 0
    report = json.loads((run_dir / "eval" / "report.json").read_text())
    assert report["sizes"]["test"] == 4 and report["sizes"]["train"] + report["sizes"]["val"] == 16
    assert report["data"]["train"]["source"] == "imagefolder"
    assert main(["eval", str(run_dir), "--data", "{source: imagefolder, pth: x}"]) == 2
    assert "eval.data.pth: unknown key; did you mean 'path'?" in capsys.readouterr().err
