"""Labels outside the class list in evaluation data (-1 for unlabeled rows, missing names,
classes the training split lacks): a clear error under ``raise``, left out and counted under
``skip``."""

from __future__ import annotations

import json

import datasets
import pytest
import yaml
from test_eval_cli import tiny_recipe
from test_reliability_data import png

from mmssl.cli import main
from mmssl.data.sources import DataError
from mmssl.eval.labels import encode_labels


def split(labels, feature) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"label": labels}, features=datasets.Features({"label": feature}))


def test_unlabeled_rows_of_a_class_label_are_left_out_and_counted():
    names = datasets.ClassLabel(names=["cat", "dog", "fox"])
    train, test = split([0, -1, 2, 1, -1], names), split([2, -1, 0], names)
    out = encode_labels(train, test, "label", "skip")
    assert out.num_classes == 3
    assert out.train["label"] == [0, 2, 1] and out.test["label"] == [2, 0]
    assert out.skipped == {"train": 2, "test": 1}


def test_raise_names_the_split_row_value_and_the_class_list():
    names = datasets.ClassLabel(names=["cat", "dog"])
    with pytest.raises(DataError, match=r"test example 1: label -1 is not in the class list "
                                        r"\(2 classes: \['cat', 'dog'\]\); 1 such rows.*on_bad_example=skip"):
        encode_labels(split([0, 1], names), split([1, -1, 0], names), "label", "raise")


def test_name_labels_use_the_training_classes_and_drop_empty_missing_and_unseen_names():
    text = datasets.Value("string")
    train = split(["dog", "cat", "", None, "dog"], text)
    test = split(["cat", "wolf", "dog", None], text)
    out = encode_labels(train, test, "label", "skip")
    assert out.num_classes == 2  # cat, dog: "wolf" is no class of the training split
    assert out.train.features["label"].names == ["cat", "dog"]
    assert out.train["label"] == [1, 0, 1] and out.test["label"] == [0, 1]
    assert out.skipped == {"train": 2, "test": 2}


def test_integer_ids_below_zero_missing_or_beyond_the_training_classes_are_outside():
    ints = datasets.Value("int64")
    out = encode_labels(split([3, 0, -1, None, 1], ints), split([0, 4, 3, -7], ints), "label", "skip")
    assert out.num_classes == 4
    assert out.train["label"] == [3, 0, 1] and out.test["label"] == [0, 3]
    assert out.skipped == {"train": 2, "test": 2}
    with pytest.raises(DataError, match=r"train example 2: label -1 .*ids 0..3"):
        encode_labels(split([3, 0, -1], ints), split([0], ints), "label", "raise")


def test_float_labels_are_not_class_ids():
    with pytest.raises(DataError, match="expected class ids"):
        encode_labels(split([0.5], datasets.Value("float32")), split([0.5], datasets.Value("float32")),
                      "label", "skip")


@pytest.mark.slow
def test_mmssl_eval_skips_unlabeled_rows_and_reports_them(tmp_path, capsys):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    for name, count in (("train", 60), ("test", 30)):
        labels = [-1 if i % 5 == 0 else i % 3 for i in range(count)]  # every fifth row unlabeled
        rows = {"image": [{"bytes": png(i), "path": None} for i in range(count)], "label": labels}
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(tmp_path / f"{name}.parquet"))
    run_dir = tmp_path / "run"
    recipe = tiny_recipe(run_dir)
    recipe["train"]["max_steps"] = 1
    recipe["data"]["on_bad_example"] = "skip"
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["pretrain", str(tmp_path / "recipe.yaml")]) == 0

    assert main(["eval", str(run_dir), "--data", str(tmp_path), "--protocol", "knn", "label_fractions=[1.0]"]) == 0
    report = json.loads((run_dir / "eval" / "report.json").read_text())
    assert report["skipped_label_rows"] == {"train": 12, "test": 6}
    assert report["num_classes"] == 3 and report["sizes"]["test"] == 24

    # the same data under the default policy: the run stops at the first unlabeled row
    saved = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    saved["data"]["on_bad_example"] = "raise"
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(saved))
    assert main(["eval", str(run_dir), "--data", str(tmp_path), "--protocol", "knn"]) == 2
    assert "train example 0: label -1 is not in the class list (3 classes" in capsys.readouterr().err
