"""A clip text tower without ``data.text.tokenizer`` trains one on the run's captions or prompts."""

from __future__ import annotations

import pytest
from test_clip_export import SMALL_BERT
from test_clip_task import SMALL_VIT, SMALL_W2V

from mmssl.data.sources import DataError
from mmssl.recipe import recipe_from_dict
from mmssl.tasks.base import build_task
from mmssl.train.loop import pretrain
from mmssl.weights import load_run

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _unknown(tokenizer, texts):
    return [t for t in texts if tokenizer.unk_token_id in tokenizer(t)["input_ids"]]


def test_prompts_train_the_tokenizer_into_the_run_dir(shared_data, tmp_path):
    recipe = recipe_from_dict({
        "output_dir": str(tmp_path / "run"),
        "task": {"name": "clip", "modalities": ["audio", "text"], "embed_dim": 8,
                 "prompts": ["someone says {name}", "the digit {name}"],
                 "towers": {"audio": {"config": SMALL_W2V}, "text": {"config": SMALL_BERT}}},
        "data": {"data_files": {"train": str(shared_data / "fsdd/test.parquet")}, "max_examples": 16,
                 "audio": {"max_seconds": 1.0}, "text": {"max_length": 16, "vocab_size": 200}},
        "train": {"batch_size": 8, "max_steps": 1, "save_every": 0, "progress": False, "cpu": True},
    })
    pretrain(recipe)
    out = (tmp_path / "run" / "tokenizer").absolute()
    assert (out / "tokenizer.json").is_file()
    _, task = load_run(tmp_path / "run")
    assert task.recipe.data.text.tokenizer == str(out)
    tokenizer = task.towers["text"].modality.tokenizer
    prompts = [p.format(name=n) for n in DIGITS for p in ("someone says {name}", "the digit {name}")]
    assert _unknown(tokenizer, prompts) == []
    assert len(tokenizer) < 200  # learned from these prompts only, not a general vocabulary


def test_captions_train_the_tokenizer(shared_data, tmp_path):
    import datasets

    recipe = recipe_from_dict({
        "output_dir": str(tmp_path / "run"),
        "task": {"name": "clip", "modalities": ["vision", "text"], "embed_dim": 8,
                 "towers": {"vision": {"config": {**SMALL_VIT, "patch_size": 8}}, "text": {"config": SMALL_BERT}}},
        "data": {"data_files": {"train": str(shared_data / "flickr8k_1k/test.parquet")},
                 "columns": {"text": "captions"}, "max_examples": 20,
                 "image": {"size": 32}, "text": {"max_length": 32, "vocab_size": 300}},
    })
    task = build_task(recipe)
    captions = datasets.load_dataset(
        "parquet", data_files=str(shared_data / "flickr8k_1k/test.parquet"), split="train[:20]"
    )["captions"]
    assert _unknown(task.towers["text"].modality.tokenizer, [c for group in captions for c in group]) == []
    assert recipe.data.text.tokenizer == str((tmp_path / "run" / "tokenizer").absolute())


def test_no_captions_and_no_class_names_is_a_clear_error(tmp_path):
    """Integer labels without names give no prompts to learn from."""
    import datasets

    datasets.Dataset.from_dict({"label": [0, 1, 0]}).to_parquet(tmp_path / "labels.parquet")
    recipe = recipe_from_dict({
        "output_dir": str(tmp_path / "run"),
        "task": {"name": "clip", "modalities": ["vision", "text"],
                 "towers": {"vision": {"config": SMALL_VIT}, "text": {"config": SMALL_BERT}}},
        "data": {"data_files": {"train": str(tmp_path / "labels.parquet")}},
    })
    with pytest.raises(DataError, match="data.text.tokenizer: empty"):
        build_task(recipe)
