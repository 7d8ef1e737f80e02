"""Shared fixtures: an isolated cache per test, and the real datasets in ``<repo>/../shared/datasets``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The real datasets: $RESNET_DATA when it is set (read once, before each test hides it), else ../shared/datasets.
BESIDE = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
SHARED_DATASETS = Path(os.environ["RESNET_DATA"]) if os.environ.get("RESNET_DATA") else BESIDE


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the resnet cache (downloads, decoded tensors) at a fresh temporary folder; hide $RESNET_DATA."""
    path = tmp_path / "resnet-cache"
    monkeypatch.setenv("RESNET_CACHE", str(path))
    monkeypatch.delenv("RESNET_DATA", raising=False)
    return path


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The read-only real datasets beside the repository; skips the test when they are absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATASETS} (expected <repo>/../shared/datasets)")
    return SHARED_DATASETS
