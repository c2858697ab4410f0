"""The MLM task: collation, learning on a fixed batch, pooling, export, and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import torch
import yaml
from test_tokenizer import corpus
from transformers import AutoModelForMaskedLM, AutoTokenizer, BertForMaskedLM, RobertaForMaskedLM

from mmssl.cli import main
from mmssl.data.examples import MapExamples
from mmssl.modalities.text import IGNORE_INDEX
from mmssl.modalities.tokenizer import train_tokenizer
from mmssl.recipe import recipe_from_dict
from mmssl.tasks.base import build_task
from mmssl.weights import load_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(corpus(), out, vocab_size=120)
    return out


def make_task(tokenizer_dir, **task):
    recipe = recipe_from_dict({
        "task": {"name": "mlm", **task},
        "data": {"text": {"tokenizer": str(tokenizer_dir), "max_length": 32}},
        "model": {"preset": "nano"},
    })
    torch.manual_seed(0)
    return build_task(recipe)


def train_examples(task, texts, seed=0):
    packed = task.prepare_dataset(datasets.Dataset.from_dict({"text": texts}))
    out = []
    for i, row in enumerate(packed):
        torch.manual_seed(seed * 1000 + i)
        out.append(task.preprocess(row))
    return out


def test_collate_masks_packed_blocks_reproducibly_and_anew_each_epoch(tokenizer_dir):
    task = make_task(tokenizer_dir)
    packed = task.prepare_dataset(datasets.Dataset.from_dict({"text": corpus(40)}))
    examples = MapExamples(packed, task.preprocess, "raise", seed=0)  # the loop's seeding

    def batch(epoch):
        examples.set_epoch(epoch)
        return task.collate([examples[i] for i in range(8)])

    a, b, later = batch(0), batch(0), batch(1)
    assert a["input_ids"].shape == (8, 32) and bool(a["attention_mask"].all())
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["mlm_labels"], b["mlm_labels"])
    assert not torch.equal(a["mlm_labels"], later["mlm_labels"])
    assert (a["mlm_labels"] != IGNORE_INDEX).any()
    examples.set_epoch(0)
    plain = task.collate_eval([examples[i] for i in range(8)])
    assert "mlm_labels" not in plain
    kept = a["mlm_labels"] == IGNORE_INDEX
    assert torch.equal(plain["input_ids"][kept], a["input_ids"][kept])


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["bert", "roberta"])
def test_loss_falls_on_a_fixed_batch(tokenizer_dir, architecture):
    task = make_task(tokenizer_dir, architecture=architecture, mask_prob=0.3)
    batch = task.collate(train_examples(task, corpus(60))[:16])
    optimizer = torch.optim.AdamW(task.parameters(), lr=3e-3)
    task.train()
    losses = []
    for _ in range(60):
        out = task(batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert losses[0] > 3.5  # about ln(vocab) at initialisation
    assert losses[-1] < 0.5 * losses[0]
    assert out.metrics["mlm_accuracy"] > 0.3


def test_loss_matches_the_full_head_loss_of_transformers(tokenizer_dir):
    task = make_task(tokenizer_dir).eval()
    batch = task.collate(train_examples(task, corpus(30))[:4])
    reference = task.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           labels=batch["mlm_labels"]).loss
    assert torch.allclose(task(batch).loss, reference, atol=1e-5)


def test_mean_pooling_ignores_padding(tokenizer_dir):
    task = make_task(tokenizer_dir).eval()
    short = task.preprocess({"text": "oil prices fell"}, train=False)
    long = task.preprocess({"text": " ".join(corpus(1, seed=4) * 3)}, train=False)
    with torch.no_grad():
        alone = task.embed(task.collate_eval([short]))
        padded = task.embed(task.collate_eval([short, long]))
        cls = task.embed(task.collate_eval([short, long]), pooling="cls")
    assert padded.shape == (2, 64) and cls.shape == (2, 64)
    assert torch.allclose(alone[0], padded[0], atol=1e-5)
    assert not torch.allclose(padded[0], cls[0])


def test_export_reloads_with_auto_classes(tokenizer_dir, tmp_path):
    task = make_task(tokenizer_dir, architecture="roberta").eval()
    assert isinstance(task.export_model(), RobertaForMaskedLM)
    task.export_model().save_pretrained(tmp_path)
    task.processor().save_pretrained(tmp_path)
    model = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    ids = AutoTokenizer.from_pretrained(tmp_path)("oil prices fell", return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(**ids).logits, task.model(**ids).logits, atol=1e-5)


def test_unset_tokenizer_is_a_clear_error_when_it_cannot_be_trained(tmp_path):
    recipe = recipe_from_dict({
        "task": {"name": "mlm"}, "output_dir": str(tmp_path / "run"),
        "data": {"source": "parquet", "data_files": {"train": str(tmp_path / "none.parquet")}},
    })
    with pytest.raises(ValueError, match="no such file"):
        build_task(recipe)


@pytest.mark.slow
def test_cli_pretrains_agnews_and_the_run_reloads(shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # the recipe names ../shared/data relative to the repository root
    out = tmp_path / "mlm"
    code = main(["pretrain", "recipes/mlm_agnews.yaml", "train.max_steps=5", "train.log_every=1",
                 "train.batch_size=8", "data.max_examples=300", "data.text.vocab_size=400",
                 "train.progress=false", f"output_dir={out}"])
    assert code == 0, capsys.readouterr().err
    saved = yaml.safe_load((out / "recipe.yaml").read_text())
    assert saved["data"]["text"]["tokenizer"] == str(out / "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(out / "tokenizer")
    assert len(tokenizer) <= 400 and tokenizer.mask_token == "[MASK]"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert all(5.0 < r["loss"] < 7.0 and r["masked_tokens"] > 0 for r in rows)  # ~ln(400) = 6.0
    assert (out / "checkpoints" / "step_00000005").is_dir()
    _, task = load_run(out)
    assert isinstance(task.export_model(), BertForMaskedLM)
    assert len(task.processor()) == len(tokenizer)


def test_a_tokenizer_trained_into_a_relative_run_dir_is_found_from_anywhere(tmp_path, monkeypatch):
    data = tmp_path / "news.parquet"
    datasets.Dataset.from_dict({"text": corpus(300)}).to_parquet(str(data))
    monkeypatch.chdir(tmp_path)
    recipe = recipe_from_dict({
        "task": {"name": "mlm"}, "output_dir": "runs/rel", "model": {"preset": "nano"},
        "data": {"source": "parquet", "data_files": {"train": str(data)}, "text": {"vocab_size": 100}},
    })
    first = build_task(recipe)
    saved = Path(recipe.data.text.tokenizer)
    assert saved.is_absolute() and saved.resolve() == (tmp_path / "runs" / "rel" / "tokenizer").resolve()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # e.g. `mmssl eval /abs/run/dir` from another folder
    assert build_task(recipe).tokenizer.get_vocab() == first.tokenizer.get_vocab()
