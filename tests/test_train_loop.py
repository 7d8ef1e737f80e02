"""The training loop on in-memory data: run-directory outputs, NaN stop, and kill-and-resume bit-identity."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from resnet.errors import CheckpointError, TrainingDivergedError
from resnet.models import model_info
from resnet.runs.checkpoint import load_checkpoint
from resnet.runs.run_dir import read_metrics
from resnet.train import Trainer, load_config, train
from test_train_fake_data import make_fake_bundle

TESTS = Path(__file__).resolve().parent


def tiny_config(run_dir: Path, **overrides: object):
    settings = {
        "model.name": "resnet20",
        "data.dataset": "fake",
        "data.batch_size": 32,
        "train.epochs": 3,
        "optim.lr": 0.1,
        "run_dir": str(run_dir),
        "log.progress": "none",
        "eval.test": "every",
        "log.every_iterations": 5,
        **overrides,
    }
    return load_config("fast", settings)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("run")
    summary = train(tiny_config(run_dir), data=make_fake_bundle())
    return run_dir, summary


def test_run_directory_contents(finished_run: tuple[Path, dict]) -> None:
    run_dir, summary = finished_run
    for name in (
        "config.toml",
        "metrics.jsonl",
        "train_curve.jsonl",
        "curves.png",
        "last.pt",
        "best.pt",
        "summary.json",
    ):
        assert (run_dir / name).is_file(), name
    records = read_metrics(run_dir)
    assert [r["iteration"] for r in records] == [8, 16, 24]
    for record in records:
        assert {
            "epoch",
            "iteration",
            "lr",
            "train_loss",
            "train_error",
            "val_error",
            "test_error",
            "images_per_sec",
            "wall_time",
            "train_time",
        } <= record.keys()
        assert 0 <= record["test_error"] <= 100
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["test_error"] == records[-1]["test_error"] == summary["test_error"]
    assert saved["best_val_error"] == min(r["val_error"] for r in records)
    assert saved["params"] > 0 and saved["versions"]["torch"] == torch.__version__ and saved["device"]
    bundle = make_fake_bundle()
    size = (bundle.in_chans, *bundle.image_size)
    expected = model_info("resnet20", input_size=size, in_chans=bundle.in_chans, num_classes=bundle.num_classes)
    assert saved["macs"] == expected["macs"] > 0
    assert summary["test_error"] < 50  # four separable classes: far above chance (75% error)


def test_tensorboard_and_curves_are_readable(finished_run: tuple[Path, dict]) -> None:
    from matplotlib.image import imread
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = finished_run
    events = EventAccumulator(str(run_dir))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"error/train", "error/val", "error/test", "train/lr", "error/running_train"} <= set(tags)
    assert [event.step for event in events.Scalars("error/test")] == [8, 16, 24]
    image = imread(run_dir / "curves.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_best_checkpoint_is_selected_on_validation(finished_run: tuple[Path, dict]) -> None:
    run_dir, summary = finished_run
    best = load_checkpoint(run_dir / "best.pt")
    assert best["iteration"] == summary["best_iteration"]
    assert best["best_val_error"] == summary["best_val_error"]


class PoisonAt:
    """Writes NaN into the weights after ``iteration`` updates, as a diverging run would."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def on_iteration_end(self, trainer: Trainer, iteration: int) -> None:
        if iteration == self.iteration:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(math.nan)


@pytest.mark.parametrize("sync_every", [1, 4])  # 4: as on a GPU, the check is read once per window
def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path: Path, sync_every: int) -> None:
    config = tiny_config(tmp_path, **{"checkpoint.every_iterations": 4, "system.sync_every": sync_every})
    with pytest.raises(TrainingDivergedError, match="iteration 6"):
        train(config, data=make_fake_bundle(), callbacks=[PoisonAt(6)])
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert checkpoint["iteration"] == 4
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values() if t.is_floating_point())


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(tiny_config(tmp_path / "nothing"), data=make_fake_bundle(), resume=True)


SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_train_fake_data import make_fake_bundle
    from test_train_loop import tiny_config
    from resnet.train import train

    class HangAt:
        def on_iteration_end(self, trainer, iteration):
            if iteration == {hang_at}:
                Path(trainer.run_dir.path, "hanging").write_text(str(iteration))
                time.sleep(600)

    run_dir, mode = Path(sys.argv[1]), sys.argv[2]
    config = tiny_config(run_dir, **{{"checkpoint.every_iterations": 3, "checkpoint.every_minutes": 0}})
    callbacks = [HangAt()] if mode == "hang" else []
    train(config, data=make_fake_bundle(), resume=mode == "resume", callbacks=callbacks)
""")


def run_script(tmp_path: Path, run_dir: Path, mode: str, hang_at: int = 13) -> subprocess.Popen:
    script = tmp_path / "run_training.py"
    script.write_text(SCRIPT.format(tests=str(TESTS), hang_at=hang_at))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, str(script), str(run_dir), mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output


@pytest.mark.slow
def test_killed_and_resumed_run_is_bit_identical(tmp_path: Path) -> None:
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    uninterrupted = run_script(tmp_path, reference, "plain")
    victim = run_script(tmp_path, interrupted, "hang")
    deadline = time.monotonic() + 240
    while not (interrupted / "hanging").exists():
        assert victim.poll() is None, victim.communicate()[0]
        assert time.monotonic() < deadline, "the training subprocess never reached the kill point"
        time.sleep(0.1)
    victim.send_signal(signal.SIGKILL)  # mid-epoch: epoch 1, batch 5 of 8, one iteration after a checkpoint
    victim.wait()
    assert load_checkpoint(interrupted / "last.pt")["position"] == {"epoch": 1, "batch": 4}
    finish(uninterrupted)
    finish(run_script(tmp_path, interrupted, "resume"))

    expected, actual = load_checkpoint(reference / "last.pt"), load_checkpoint(interrupted / "last.pt")
    assert expected["iteration"] == actual["iteration"] == 24
    for name, tensor in expected["model"].items():
        assert torch.equal(tensor, actual["model"][name]), name
    for key, state in expected["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], actual["optimizer"]["state"][key]["momentum_buffer"])

    def comparable(records: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in ("images_per_sec", "wall_time", "train_time")} for r in records]

    assert comparable(read_metrics(reference)) == comparable(read_metrics(interrupted))
    curve = read_metrics(interrupted, "train_curve.jsonl")
    assert [r["iteration"] for r in curve] == [5, 10, 15, 20]  # the lines after the checkpoint were not doubled
    assert curve == read_metrics(reference, "train_curve.jsonl")


def test_a_finished_run_directory_is_not_overwritten(finished_run: tuple[Path, dict]) -> None:
    from resnet.errors import ConfigError

    run_dir, _ = finished_run
    with pytest.raises(ConfigError, match="--resume"):
        train(tiny_config(run_dir), data=make_fake_bundle())


def test_plain_progress_lines(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import io

    from resnet.train.progress import Progress

    stream = io.StringIO()
    progress = Progress("auto", total=20, start=0, every=10, stream=stream)  # not a terminal: plain lines
    for iteration in range(1, 21):
        progress.update(iteration, 1, 0.5, 12.5, 32, 0.1, 0.1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("iter 10/20") and "img/s" in lines[0] and "eta" in lines[0]


class CheckpointProbe:
    """Records, after each update, which iteration ``last.pt`` holds."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_iteration_end(self, trainer: Trainer, iteration: int) -> None:
        path = trainer.run_dir.file("last.pt")
        self.seen.append(load_checkpoint(path)["iteration"] if path.exists() else -1)


def test_time_based_checkpoints(tmp_path: Path) -> None:
    probe = CheckpointProbe()
    config = tiny_config(tmp_path, **{"checkpoint.every_minutes": 1e-9, "train.epochs": 1})
    train(config, data=make_fake_bundle(), callbacks=[probe])
    assert probe.seen == [-1, *range(1, 8)]  # the interval elapses at every update: saved after each one


def test_truncated_checkpoint_gives_one_clear_error(finished_run: tuple[Path, dict], tmp_path: Path) -> None:
    run_dir, _ = finished_run
    data = (run_dir / "last.pt").read_bytes()
    truncated = tmp_path / "last.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(truncated)
    truncated.write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(truncated)
