"""Shared fixtures: the real data sets in ../shared/data, skipped with a reason when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

#: certificate settings that HTTP clients read; one naming a missing file makes even a plain
#: http:// request to the local fake Hub fail, so such settings are dropped for the tests.
CA_BUNDLE_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture(autouse=True, scope="session")
def _no_missing_ca_bundles() -> None:
    for name in CA_BUNDLE_VARIABLES:
        if name in os.environ and not Path(os.environ[name]).exists():
            del os.environ[name]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (CIFAR-10, MNIST, FSDD, AG News, Flickr8k subsets as parquet)."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"the shared data sets are not at {SHARED_DATA}")
    return SHARED_DATA
