"""End to end on real data: `resnet train` on a Fashion-MNIST subset, then `--resume` of the finished run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnet.cli import main
from resnet.runs.run_dir import read_metrics

pytestmark = pytest.mark.slow  # torchrun, subprocesses, compilation or real data: `make check` skips it


@pytest.fixture(scope="module")
def fmnist_run(shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("fmnist") / "run"
    code = main(
        [
            "train",
            "--model",
            "resnet20",
            "--dataset",
            "fashion-mnist",
            "--recipe",
            "fast",
            "--data-dir",
            str(shared_datasets),
            "--subset",
            "3000",
            "--epochs",
            "3",
            "--batch-size",
            "50",
            "--device",
            "cpu",
            "--run-dir",
            str(run_dir),
            "--progress",
            "plain",
            "--set",
            "data.val_size=512",
        ]
    )
    assert code == 0
    return run_dir


def test_tiny_resnet_learns_fashion_mnist(fmnist_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = json.loads((fmnist_run / "summary.json").read_text())
    assert summary["test_error"] < 35.0, summary  # chance is 90% error
    assert summary["iterations"] == 3 * (3000 // 50)
    records = read_metrics(fmnist_run)
    assert [r["iteration"] for r in records] == [60, 120, 180]
    assert records[-1]["test_error"] == summary["test_error"] and records[0]["test_error"] is None


def test_resume_of_a_finished_run_changes_nothing(fmnist_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = json.loads((fmnist_run / "summary.json").read_text())
    assert main(["train", "--resume", "--run-dir", str(fmnist_run), "--progress", "none"]) == 0
    after = json.loads((fmnist_run / "summary.json").read_text())
    assert after["test_error"] == before["test_error"] and after["iterations"] == before["iterations"]
    assert "test error" in capsys.readouterr().out
