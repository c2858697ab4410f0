"""Shared fixtures: the real data sets in ../shared/data, skipped with a reason when absent."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (CIFAR-10, MNIST, FSDD, AG News, Flickr8k subsets as parquet)."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"the shared data sets are not at {SHARED_DATA}")
    return SHARED_DATA
