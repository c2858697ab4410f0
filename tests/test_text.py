"""Text adapter: BERT masking statistics, packing, padding, backbone configs."""

from __future__ import annotations

import copy

import datasets
import pytest
import torch
from test_tokenizer import corpus

from mmssl.modalities.text import (
    IGNORE_INDEX,
    TextAdapter,
    TokenMasker,
    bert_config,
    mask_per_example,
    pack_dataset,
    pad_batch,
    roberta_config,
    tokenize_dataset,
    word_start_table,
)
from mmssl.modalities.tokenizer import train_tokenizer
from mmssl.recipe import ModelConfig, TextConfig


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_tokenizer(corpus(), tmp_path_factory.mktemp("tok"), vocab_size=120)


def random_batch(tokenizer, rows: int = 64, length: int = 256, seed: int = 0) -> torch.Tensor:
    """Non-special ids with [CLS] first, a [SEP] in the middle and padding at the end."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, len(tokenizer), (rows, length), generator=g)
    ids[:, 0] = tokenizer.cls_token_id
    ids[:, length // 2] = tokenizer.sep_token_id
    ids[:, -20:] = tokenizer.pad_token_id
    return ids


def test_masking_statistics_follow_bert(tokenizer):
    ids = random_batch(tokenizer)
    masker = TokenMasker(tokenizer)
    corrupted, labels = masker(ids, torch.Generator().manual_seed(1))
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    chosen = labels != IGNORE_INDEX
    assert not (chosen & special).any()
    assert torch.equal(corrupted[special], ids[special])
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(corrupted[~chosen], ids[~chosen])
    assert abs(chosen.sum().item() / (~special).sum().item() - 0.15) < 0.015
    n = chosen.sum().item()
    masked = (corrupted[chosen] == tokenizer.mask_token_id).sum().item() / n
    unchanged = (corrupted[chosen] == ids[chosen]).sum().item() / n
    random_ = 1 - masked - unchanged
    assert abs(masked - 0.8) < 0.03 and abs(unchanged - 0.1) < 0.025 and abs(random_ - 0.1) < 0.025
    replaced = corrupted[chosen & (corrupted != ids) & (corrupted != tokenizer.mask_token_id)]
    assert not torch.isin(replaced, torch.tensor(tokenizer.all_special_ids)).any()
    assert torch.equal(ids, random_batch(tokenizer)), "the input must not be modified"


def test_masks_are_reproducible_from_the_generator_and_change_with_its_seed(tokenizer):
    ids = random_batch(tokenizer, rows=8)
    masker = TokenMasker(tokenizer, mask_prob=0.3)
    a = masker(ids, torch.Generator().manual_seed(5))
    b = masker(ids, torch.Generator().manual_seed(5))
    c = masker(ids, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_whole_word_masking_takes_all_pieces_of_a_word(tokenizer):
    # glued pairs ("oilprices") are words the tokenizer never saw whole: several pieces each
    texts = [t.replace(" and ", " ").replace(" of ", "") for t in corpus(200, seed=3)]
    ids = pad_batch([torch.tensor(tokenizer(t)["input_ids"]) for t in texts], 0)["input_ids"]
    masker = TokenMasker(tokenizer, mask_prob=0.3, whole_word=True)
    _, labels = masker(ids, torch.Generator().manual_seed(0))
    chosen = labels != IGNORE_INDEX
    starts = word_start_table(tokenizer)[ids]
    assert (~starts & (ids != 0)).any(), "the corpus must have multi-piece words"
    for row in range(ids.shape[0]):
        for pos in range(1, ids.shape[1]):
            if not starts[row, pos]:
                assert chosen[row, pos] == chosen[row, pos - 1]
    words = starts & ~torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    assert abs(chosen[words].float().mean().item() - 0.3) < 0.05


def test_word_starts_follow_the_vocabularys_main_marker(tokenizer):
    base = word_start_table(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    assert base.tolist() == [p.startswith("▁") or p in tokenizer.all_special_tokens for p in pieces]
    with_hashes = copy.deepcopy(tokenizer)  # e.g. markdown headings learned as pieces
    with_hashes.add_tokens(["##", "###", "##s"])
    table = word_start_table(with_hashes)
    assert torch.equal(table[:len(tokenizer)], base)


def test_packing_fills_blocks_without_padding_and_keeps_every_token_once(tokenizer):
    texts = corpus(300, seed=2) + [""]
    text_cfg = TextConfig(max_length=16)
    packed = pack_dataset(datasets.Dataset.from_dict({"text": texts, "label": [0] * 301}),
                          tokenizer, text_cfg, batch_size=50)
    blocks = packed["input_ids"]
    assert packed.column_names == ["input_ids"]
    assert all(b[0] == tokenizer.cls_token_id for b in blocks)
    assert all(tokenizer.pad_token_id not in b for b in blocks)
    short = [b for b in blocks if len(b) != 16]
    assert len(short) <= 7 and all(len(b) < 16 for b in short)  # at most the tail of each map batch
    expected = [t for text in texts if text
                for t in (*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.sep_token_id)]
    assert [t for b in blocks for t in b[1:]] == expected


def test_streams_that_do_not_list_their_columns_pack_and_tokenize_like_datasets(tokenizer):
    texts = corpus(120, seed=6) + [""]
    table = datasets.Dataset.from_dict({"text": texts, "label": [1] * len(texts)})
    stream = table.to_iterable_dataset().map(lambda batch: batch, batched=True)
    assert stream.column_names is None  # as for many Hub streams
    text_cfg = TextConfig(max_length=16)
    for prepare in (pack_dataset, tokenize_dataset):
        rows = list(prepare(stream, tokenizer, text_cfg))
        assert rows == list(prepare(table, tokenizer, text_cfg)), prepare.__name__


def test_unpacked_examples_are_single_truncated_texts(tokenizer):
    texts = ["oil prices fell", "", " ".join(["market"] * 50)]
    out = tokenize_dataset(datasets.Dataset.from_dict({"text": texts}), tokenizer, TextConfig(max_length=12))
    rows = out["input_ids"]
    assert len(rows) == 2 and rows[0] == tokenizer("oil prices fell")["input_ids"]
    assert len(rows[1]) == 12 and rows[1][0] == tokenizer.cls_token_id and rows[1][-1] == tokenizer.sep_token_id


def test_adapter_preprocess_and_collate_pad_with_attention_mask(tokenizer):
    adapter = TextAdapter(TextConfig(max_length=8, lowercase=True), tokenizer)
    a = adapter.preprocess({"text": "OIL prices fell", "label": 1}, train=False)
    b = adapter.preprocess({"text": " ".join(["market"] * 30), "label": 2}, train=False)
    assert a["input_ids"].tolist() == tokenizer("oil prices fell")["input_ids"]
    assert len(b["input_ids"]) == 8
    batch = adapter.collate([a, b])
    n = len(a["input_ids"])
    assert batch["input_ids"].shape == (2, 8) and batch["labels"].tolist() == [1, 2]
    assert batch["attention_mask"][0].tolist() == [1] * n + [0] * (8 - n)
    assert (batch["input_ids"][0, n:] == tokenizer.pad_token_id).all()
    with pytest.raises(ValueError, match="text string"):
        adapter.preprocess({"text": None})


def test_backbone_configs_follow_presets_tokenizer_and_overrides(tokenizer):
    text = TextConfig(max_length=128)
    bert = bert_config(ModelConfig(preset="nano", config={"num_hidden_layers": 3}), text, tokenizer)
    assert (bert.hidden_size, bert.num_hidden_layers, bert.vocab_size) == (64, 3, len(tokenizer))
    assert bert.pad_token_id == tokenizer.pad_token_id
    roberta = roberta_config(ModelConfig(preset="tiny"), text, tokenizer)
    assert roberta.max_position_embeddings == 514 and roberta.hidden_size == 128
    with pytest.raises(ValueError, match="unknown text preset"):
        bert_config(ModelConfig(preset="huge"), text, tokenizer)
    with pytest.raises(ValueError, match="no field 'hiddne_size'"):
        bert_config(ModelConfig(preset="nano", config={"hiddne_size": 3}), text, tokenizer)


def test_an_examples_mask_depends_on_its_seed_not_on_its_batchmates_or_padding(tokenizer):
    masker = TokenMasker(tokenizer, mask_prob=0.3)
    texts = corpus(6, seed=4)
    rows = [torch.tensor(tokenizer(t)["input_ids"]) for t in texts]
    full = pad_batch(rows, 0)
    alone = pad_batch(rows[2:3], 0)
    ids, labels = mask_per_example(masker, full["input_ids"], full["attention_mask"], list(range(6)))
    ids2, labels2 = mask_per_example(masker, alone["input_ids"], alone["attention_mask"], [2])
    n = len(rows[2])
    assert torch.equal(ids[2, :n], ids2[0, :n]) and torch.equal(labels[2, :n], labels2[0, :n])
    assert (labels[2, n:] == IGNORE_INDEX).all() and torch.equal(ids[2, n:], full["input_ids"][2, n:])
    assert (labels != IGNORE_INDEX).any()
    other, _ = mask_per_example(masker, alone["input_ids"], alone["attention_mask"], [7])
    assert not torch.equal(other, ids2)
