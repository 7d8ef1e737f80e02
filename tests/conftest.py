"""Shared fixtures: an isolated cache per test, the real datasets in ``<repo>/../shared/datasets``, and the tiny
finished runs that the bad-input tests share."""

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


# Finished tiny runs shared by the bad-input tests (tests/test_bad_inputs_*.py), trained once per session (per
# pytest-xdist worker). The tests read them, or copy them before they change anything.


@pytest.fixture(scope="session")
def trained_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-iteration resnet8 run on a 3-class folder (a, b, c) of 8x8 images, trained from a working
    directory of its own with ``--dataset data``: ``BASE/data`` (train/ and test/) and ``BASE/run``."""
    from bad_inputs import TRAIN, image_folder
    from resnet.cli import main

    base = tmp_path_factory.mktemp("trained")
    folder = image_folder(base / "data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RESNET_CACHE", str(tmp_path_factory.mktemp("trained-cache")))
        patch.delenv("RESNET_DATA", raising=False)
        patch.chdir(base)
        assert main([*TRAIN, "--dataset", "data", "--iterations", "2", "--run-dir", str(base / "run")]) == 0
    assert folder.is_dir()
    return base


@pytest.fixture
def trained(trained_base: Path) -> Path:
    """The shared tiny run's directory: ``trained / "last.pt"``, ``summary.json``, ...; its image folder is
    ``trained.parent / "data"`` (files that need the folder itself override this fixture)."""
    return trained_base / "run"


@pytest.fixture(scope="session")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 1-iteration resnet8 run (``RUN``, beside its image folder ``RUN/../folder``) whose saved
    preprocessing resizes the shorter side to 256 (as ImageNet models do), so a 20000x1 strip would become
    256x5,120,000."""
    from bad_inputs import TRAIN, image_folder
    from resnet.cli import main

    root = tmp_path_factory.mktemp("resized")
    folder = image_folder(root / "folder")
    argv = [*TRAIN, "--dataset", str(folder), "--iterations", "1", "--run-dir", str(root / "run")]
    argv[argv.index("data.pipeline=tensor")] = "data.pipeline=loader"
    sets = ["data.num_workers=0", "data.crop_size=8", "data.eval_resize=256"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RESNET_CACHE", str(root / "cache"))
        patch.delenv("RESNET_DATA", raising=False)
        assert main([*argv, *(a for s in sets for a in ("--set", s))]) == 0
    return root / "run"


@pytest.fixture(scope="session")
def exported(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``run``'s ``best.pt`` exported as safetensors: ``model.safetensors`` and its ``model.json`` sidecar."""
    from resnet.export import export_checkpoint

    out = tmp_path_factory.mktemp("exported") / "model.safetensors"
    export_checkpoint(run / "best.pt", "safetensors", out)
    return out
