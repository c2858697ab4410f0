"""Retrieval and zero-shot metrics on toy sets whose answers are known by hand."""

from __future__ import annotations

import pytest
import torch

from mmssl.data.pairing import prompt_texts
from mmssl.eval.retrieval import labels_relevance, recall_at_k, retrieval_metrics
from mmssl.eval.zero_shot import class_prototypes, prompt_labels, zero_shot_accuracy


def test_recall_at_k_counts_a_query_once_any_relevant_item_is_in_its_top_k():
    similarity = torch.tensor([
        [0.9, 0.1, 0.5, 0.0],   # relevant item 0 ranks 1st
        [0.9, 0.1, 0.5, 0.0],   # relevant item 2 ranks 2nd
        [0.9, 0.8, 0.5, 0.0],   # relevant item 3 ranks 4th
    ])
    relevant = torch.zeros(3, 4, dtype=torch.bool)
    relevant[0, 0] = relevant[1, 2] = relevant[2, 3] = True
    assert recall_at_k(similarity, relevant, ks=(1, 2, 3, 4)) == pytest.approx(
        {1: 1 / 3, 2: 2 / 3, 3: 2 / 3, 4: 1.0}
    )


def test_retrieval_metrics_both_directions_with_captions():
    # two images, four captions: captions 0, 1 belong to image 0, captions 2, 3 to image 1
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    captions = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    owner = torch.tensor([0, 0, 1, 1])
    out = retrieval_metrics(images, captions, labels_relevance(torch.arange(2), owner), ("image", "text"))
    # image 0's best caption is 1 (its own); image 1's best are 0 or 2 (tied at 1.0), top-2 holds 2
    assert out["image_to_text/R@5"] == 1.0
    assert out["image_to_text/chance@1"] == 0.5
    # caption 0 -> image 1 (wrong), 1 -> image 0, 2 -> image 1, 3 -> image 1: 3 of 4 at R@1
    assert out["text_to_image/R@1"] == 0.75
    assert out["text_to_image/R@5"] == 1.0


def test_recall_needs_a_relevant_item_per_query():
    with pytest.raises(ValueError, match="at least one relevant"):
        recall_at_k(torch.zeros(2, 2), torch.tensor([[True, False], [False, False]]))


def test_prototypes_average_per_class_and_classify():
    emb = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.0, -1.0]])
    labels = torch.tensor([0, 0, 1, 2])
    protos = class_prototypes(emb, labels, 3)
    torch.testing.assert_close(protos[0], torch.nn.functional.normalize(torch.tensor([0.9, 0.3]), dim=0))
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    acc = zero_shot_accuracy(queries, torch.tensor([0, 1, 2]), protos, ks=(1, 2))
    # query 2 (label 2) is closest to class 1, then class 0: wrong at top-1 and top-2
    assert acc == pytest.approx({"top1": 2 / 3, "top2": 2 / 3, "chance": 1 / 3})
    with pytest.raises(ValueError, match=r"class\(es\) \[1\]"):
        class_prototypes(emb[:2], torch.tensor([0, 0]), 2)


def test_prompts_are_class_major_and_need_a_placeholder():
    texts = prompt_texts(["cat", "dog"], ["a {name}", "the {name}"])
    assert texts == ["a cat", "the cat", "a dog", "the dog"]
    assert prompt_labels(2, 2).tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="placeholder"):
        prompt_texts(["cat"], ["a photo"])
