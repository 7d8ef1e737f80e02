"""The data configuration as training, ``data info`` and evaluation share it: one split rule, one ``in_chans``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet.cli import main
from resnet.data import DataConfig, build_data, dataset_info, registry, validation_size
from resnet.data.registry import FASHION_MNIST
from resnet.eval.data import build_eval_data
from resnet.runs import read_checkpoint
from resnet.train import Trainer, load_config
from synthetic import write_idx_files

TINY = {"log.tensorboard": False, "log.progress": "none", "checkpoint.every_minutes": 0, "system.threads": 1}


@pytest.fixture
def small_fashion_mnist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A 600-image Fashion-MNIST in the official format: its default validation split is a tenth, not 5,000."""
    root = tmp_path / "datasets"
    write_idx_files(root / "fashion-mnist", train=600, test=30)
    monkeypatch.setattr(registry, "FASHION_MNIST", dataclasses.replace(FASHION_MNIST, content_md5={}))
    return root


def test_validation_size_is_one_rule() -> None:
    assert validation_size(60000, None, registered_default=5000) == 5000
    assert validation_size(600, None, registered_default=5000) == 60  # capped at a tenth
    assert validation_size(600, None) == 60 and validation_size(600, 7) == 7
    assert validation_size(600, None, own_val=True) == 0 and validation_size(600, None, held_out="val") == 0


def test_eval_val_split_is_the_one_training_held_out(small_fashion_mnist: Path, tmp_path: Path) -> None:
    settings = {
        "model.name": "resnet8", "data.dataset": "fashion-mnist", "data.data_dir": str(small_fashion_mnist),
        "data.subset": 100, "data.batch_size": 20, "train.iterations": 2, "run_dir": str(tmp_path / "run"), **TINY,
    }  # fmt: skip
    trainer = Trainer(load_config("fast", settings))
    trainer.run()
    held_out = trainer.data.val_indices
    assert held_out is not None and len(held_out) == 60 == trainer.data.num_val
    assert dataset_info("fashion-mnist", data_dir=small_fashion_mnist)["default_split"]["val"] == 60

    saved = read_checkpoint(tmp_path / "run" / "last.pt")
    evaluated = build_eval_data(saved.meta, saved.config.data, seed=saved.config.seed, split="val")
    assert evaluated.indices is not None and torch.equal(evaluated.indices, held_out)
    images, labels = next(iter(evaluated.passes[0]))
    train_images, train_labels = next(iter(trainer.data.val))
    assert torch.equal(labels, train_labels[: len(labels)]) and torch.allclose(images, train_images[: len(images)])

    out = tmp_path / "val.json"
    assert main(["eval", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--split", "val", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["images"] == 60


def _rgb_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", 10), ("test", 3)):
        for label in ("red", "blue"):
            (root / split / label).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels, "RGB").save(root / split / label / f"{i}.png")
    return root


def test_rgb_images_become_grayscale_for_one_input_channel(tmp_path: Path) -> None:
    folder = _rgb_folder(tmp_path / "rgb")
    data = build_data(DataConfig(str(folder), pipeline="tensor", batch_size=4, val_size=0, augment="none"), in_chans=1)
    assert data.in_chans == 1 and data.preprocessing["mode"] == "L"
    first = sorted((folder / "test" / "blue").iterdir())[0]
    expected = torch.from_numpy(np.asarray(Image.open(first).convert("L"), dtype=np.uint8).copy())  # PIL's luma
    assert torch.equal(data.test.images[0, 0].cpu(), expected)


def test_train_converts_an_rgb_folder_for_in_chans_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _rgb_folder(tmp_path / "rgb")
    common = ["train", "--model", "resnet8", "--dataset", str(folder), "--iterations", "2", "--batch-size", "4",
              "--set", "model.options.in_chans=1", "--set", "log.tensorboard=false", "--progress", "none"]  # fmt: skip
    run = tmp_path / "run"
    assert main([*common, "--set", "data.pipeline=tensor", "--run-dir", str(run)]) == 0
    assert read_checkpoint(run / "last.pt").meta["model"]["options"]["in_chans"] == 1
    # Through DataLoader workers (images of any size) it is refused at setup, before any file of the run exists.
    refused = tmp_path / "refused"
    capsys.readouterr()
    assert main([*common, "--set", "data.pipeline=loader", "--run-dir", str(refused)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "in_chans=1" in err and "Traceback" not in err
    assert not refused.exists()


def test_resume_finds_the_data_where_the_run_found_it(
    small_fashion_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    monkeypatch.setenv("RESNET_DATA", str(small_fashion_mnist))  # found through the environment at the start...
    args = ["train", "--model", "resnet8", "--dataset", "fashion-mnist", "--recipe", "cifar-paper",
            "--batch-size", "20", "--set", "data.val_size=20", "--set", "log.tensorboard=false", "--progress", "plain",
            "--run-dir", str(run)]  # fmt: skip
    assert main([*args, "--iterations", "2"]) == 0
    monkeypatch.delenv("RESNET_DATA")  # ... and a new shell without it resumes all the same
    capsys.readouterr()
    assert main(["train", "--resume", "--run-dir", str(run), "--iterations", "3", "--progress", "plain"]) == 0
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"resuming {run} from iteration 2 of 3"
    # the milestones (rescaled to 1 and 1.5 of 2 iterations) have divided 0.1 twice by iteration 2
    assert "learning rate: 0.001 at iteration 2, where the run resumes; schedule from 0.1, multistep" in err
