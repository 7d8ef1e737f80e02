"""The real datasets in ``../shared/datasets`` (skipped when absent) and the ``resnet data`` command."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resnet.cli import main
from resnet.data import load_data
from synthetic import write_idx_files


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the real-data tests, so the 60k CIFAR JPEGs are decoded once per session."""
    return tmp_path_factory.mktemp("real-cache")


def test_fashion_mnist_real(shared_datasets, real_cache, monkeypatch, capsys):
    monkeypatch.setenv("RESNET_CACHE", str(real_cache))
    assert main(["data", "info", "fashion-mnist", "--data-dir", str(shared_datasets), "--no-download"]) == 0
    out = capsys.readouterr().out
    assert "train 60000, test 10000" in out and "T-shirt/top" in out and "(28, 28) x 1" in out
    data = load_data("fashion-mnist", data_dir=shared_datasets, download=False, in_chans=1)
    assert (data.num_train, data.num_val, data.num_test) == (55000, 5000, 10000)
    x, y = next(data.train.epoch(0))
    assert x.shape == (128, 1, 28, 28) and y.max() <= 9


@pytest.mark.slow
def test_cifar10_jpeg_real(shared_datasets, real_cache, monkeypatch, capsys):
    monkeypatch.setenv("RESNET_CACHE", str(real_cache))
    assert main(["data", "info", "cifar10-jpeg", "--data-dir", str(shared_datasets), "--no-download"]) == 0
    out = capsys.readouterr().out
    assert "train 50000, test 10000" in out and "airplane" in out and "truck" in out
    data = load_data("cifar10-jpeg", data_dir=shared_datasets, download=False)  # from the tensor cache
    assert (data.num_train, data.num_val, data.num_test, data.image_size) == (45000, 5000, 10000, (32, 32))
    assert data.class_names[0] == "airplane" and data.class_names[-1] == "truck"
    x, _ = next(iter(data.test))
    assert x.shape == (256, 3, 32, 32) and torch.isfinite(x).all()


def test_cli_info_list_and_errors(tmp_path, capsys):
    write_idx_files(tmp_path / "mnist")
    assert main(["data", "info", "mnist", "--data-dir", str(tmp_path), "--no-download"]) == 0
    assert "train 60, test 20" in capsys.readouterr().out
    assert main(["data", "list"]) == 0
    assert "cifar10-jpeg" in capsys.readouterr().out
    assert main(["data", "info", "cifar100", "--data-dir", str(tmp_path), "--no-download"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("resnet data: error: cifar100 not found") and err.count("\n") == 1
    assert main(["data", "info", str(tmp_path / "nothing")]) == 2
    assert "expected an image folder" in capsys.readouterr().err
