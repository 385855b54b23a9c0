"""Shared fixtures: where the public mirror is, and skipping when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Tests patch models and data: answers cached by an earlier run must not stand in for them
# (tests/test_prediction_cache.py turns the cache on in a temporary directory).
os.environ["CHRONOS_PREDICTION_CACHE"] = "0"


def mirror_path() -> Path | None:
    env = os.environ.get("CHRONOS_DATA_MIRROR")
    path = Path(env) if env else REPO.parent / "shared" / "seeddata"
    return path if path.is_dir() else None


@pytest.fixture
def mirror() -> Path:
    path = mirror_path()
    if path is None:
        pytest.skip("public data mirror (../shared/seeddata or CHRONOS_DATA_MIRROR) not present")
    return path
