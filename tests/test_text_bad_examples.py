"""Empty and non-string texts under the bad-example policy."""

from __future__ import annotations

import datasets
import pytest

from mmssl.data.examples import BadExampleError
from mmssl.modalities.text import drop_bad_texts

TEXTS = ["a good text", "", "   ", None, "another one", "last"]


def test_raise_names_the_first_bad_index_and_why():
    ds = datasets.Dataset.from_dict({"text": TEXTS})
    with pytest.raises(BadExampleError, match=r"example 1: an empty text .*on_bad_example=skip"):
        drop_bad_texts(ds, "raise")
    only_none = datasets.Dataset.from_dict({"text": ["ok", None]})
    with pytest.raises(BadExampleError, match=r"example 1: not a string \(NoneType\)"):
        drop_bad_texts(only_none, "raise")


def test_skip_drops_and_counts():
    kept, bad = drop_bad_texts(datasets.Dataset.from_dict({"text": TEXTS}), "skip")
    assert bad == 3
    assert kept["text"] == ["a good text", "another one", "last"]


def test_streams_drop_as_they_go_and_raise_with_the_index():
    stream = datasets.Dataset.from_dict({"text": TEXTS}).to_iterable_dataset()
    kept, _ = drop_bad_texts(stream, "skip")
    assert [row["text"] for row in kept] == ["a good text", "another one", "last"]
    strict, _ = drop_bad_texts(stream, "raise")
    with pytest.raises(BadExampleError, match="example 1: an empty text"):
        list(strict)
