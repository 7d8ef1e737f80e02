"""Bad inputs to evaluation and prediction of a trained net (resnet.eval, resnet.inference, resnet.runtime).

What it guarantees: ``eval`` reads the run's own data wherever it is run from, and refuses data with other class
names or more classes than the model has outputs; an unknown or unavailable ``--device`` is one line for ``train``,
``eval`` and ``predict``; ``predict`` says it reads files, not standard input, predicts a 16-bit gray image as the
same picture in 8 bits, and names an extreme image while predicting the others in bounded memory; a file given as
``--checkpoint`` that is not one (ONNX, an image, JSON, TorchScript) says what it is. Every refused command exits 2
with one line.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bad_inputs import TRAIN, good_images, image_folder, one_error_line, png8, run_cli
from synthetic import write_image_folder

SRC = str(Path(__file__).resolve().parents[1] / "src")


GIB = 1 << 30


@pytest.fixture
def trained(trained_base: Path) -> Path:
    """The shared tiny run's folder (``tests/conftest.py``), trained from there with ``--dataset data``:
    ``trained / "data"`` and ``trained / "run"``."""
    return trained_base


# --- the data eval reads: the run's own, not other classes ----------------------------------------------------------


def test_eval_from_another_directory_reads_the_run_s_data(trained: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    image_folder(elsewhere / "data", test=1)  # the same relative path names other images here
    monkeypatch.chdir(elsewhere)
    code, out, _ = run_cli(capsys, "eval", "--checkpoint", str(trained / "run" / "last.pt"))
    assert code == 0 and str(trained / "data") in out and "6 images" in out  # the run's own 3 x 2 test images


@pytest.mark.parametrize("classes", [("ant", "bee", "cat"), ("ant", "bee")])  # renamed; and a variant: fewer
def test_eval_on_other_class_names_is_refused(trained: Path, tmp_path: Path, capsys, classes) -> None:
    other = write_image_folder(tmp_path / "other", classes, splits={"train": 2, "test": 2}, size=(8, 8))
    code, _, err = run_cli(capsys, "eval", "--checkpoint", str(trained / "run" / "last.pt"), "--dataset", str(other))
    assert code == 2 and "--allow-other-classes" in one_error_line(err)
    code, _, _ = run_cli(capsys, "eval", "--checkpoint", str(trained / "run" / "last.pt"), "--dataset", str(other),
                         "--allow-other-classes")  # fmt: skip
    assert code == 0


def test_eval_on_more_classes_than_outputs_is_refused(trained: Path, tmp_path: Path, capsys) -> None:
    more = write_image_folder(tmp_path / "more", ("a", "b", "c", "d"), splits={"train": 2, "test": 2}, size=(8, 8))
    for extra in ([], ["--allow-other-classes"]):
        code, _, err = run_cli(
            capsys, "eval", "--checkpoint", str(trained / "run" / "last.pt"), "--dataset", str(more), *extra
        )
        assert code == 2 and "4 classes" in one_error_line(err)


# --- devices --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["banana", "mps", "cuda:7"])
def test_unavailable_or_unknown_devices_are_one_line(trained: Path, capsys, device: str) -> None:
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    checkpoint = str(trained / "run" / "last.pt")
    image = next((trained / "data" / "test" / "a").iterdir())
    for argv in (
        [*TRAIN, "--dataset", str(trained / "data"), "--iterations", "1", "--device", device],
        ["eval", "--checkpoint", checkpoint, "--device", device],
        ["predict", str(image), "--checkpoint", checkpoint, "--device", device],
    ):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and device.split(":")[0] in one_error_line(err), argv


# --- what predict reads ---------------------------------------------------------------------------------------------


def test_predict_from_standard_input_says_what_it_reads(trained: Path, capsys) -> None:
    code, _, err = run_cli(capsys, "predict", "-", "--checkpoint", str(trained / "run" / "last.pt"))
    assert code == 2 and "not standard input" in one_error_line(err)


def test_16_bit_gray_predicts_like_the_same_picture_in_8_bits(capsys, run: Path, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from bad_inputs import png16

    values = np.full((12, 12), 128 * 257, dtype=np.uint16)  # 128 in 8 bits; saturated to 255 before
    png16(tmp_path / "gray16.png", values)
    Image.fromarray((values >> 8).astype(np.uint8)).save(tmp_path / "gray8.png")
    code, out, err = run_cli(capsys, "predict", str(tmp_path / "gray16.png"), str(tmp_path / "gray8.png"),
                             "--checkpoint", str(run / "best.pt"), "--no-fast")  # fmt: skip
    assert code == 0, err
    first, second = (line.split(": ", 1)[1] for line in out.splitlines())
    assert first == second


def _predict_limited(*argv: str) -> tuple[subprocess.CompletedProcess, int]:
    """``resnet predict ARGV`` in a child whose heap may not exceed 1 GiB (RLIMIT_DATA); returns the process and
    its peak resident set in bytes."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (GIB, GIB))

    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(
        [sys.executable, "-m", "resnet", "predict", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
    )
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return proc, max(peak, before) * 1024


@pytest.mark.slow
def test_predict_names_a_strip_and_predicts_the_others_in_bounded_memory(run: Path, tmp_path: Path) -> None:
    strip = png8(tmp_path / "strip.png", 20000, 1)  # 144 bytes; 5.1 GB before
    tall = png8(tmp_path / "tall.png", 1, 60000)  # a traceback before, and no image predicted
    first, second = good_images(run)
    checkpoint = ("--checkpoint", str(run / "best.pt"))
    baseline, _ = _predict_limited(str(first), str(second), *checkpoint)
    if baseline.returncode != 0:  # this torch build's libraries alone need more (~0.85 GiB here)
        pytest.skip(f"resnet predict on good images needs more than 1 GiB of heap here: {baseline.stderr[-200:]}")
    proc, peak = _predict_limited(str(first), str(strip), str(tall), str(second), *checkpoint)
    assert proc.returncode == 1, proc.stderr  # 1: some images could not be read
    assert [line.split(":")[0] for line in proc.stdout.splitlines()] == [str(first), str(second)]
    assert "Traceback" not in proc.stderr
    skipped = [line for line in proc.stderr.splitlines() if line.startswith("resnet predict: skipped")]
    assert len(skipped) == 2
    assert f"cannot read image {strip}: its aspect ratio is 20,000:1" in skipped[0]
    assert f"cannot read image {tall}: its aspect ratio is 60,000:1" in skipped[1]
    print(f"peak RSS of predict with the strip: {peak / 2**20:.0f} MiB")  # torch's libraries alone are ~0.9 GiB


# --- a file given as --checkpoint that is not one -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["onnx", "image", "json", "torchscript"])
def test_a_file_that_is_not_a_checkpoint_says_what_it_is(trained: Path, tmp_path: Path, capsys, kind: str) -> None:
    path = {"onnx": tmp_path / "model.onnx", "image": tmp_path / "x.pt", "json": tmp_path / "x.pt",
            "torchscript": tmp_path / "ts.pt"}[kind]  # fmt: skip
    if kind == "onnx":
        path.write_bytes(b"\x08\x08\x12\x07pytorch")
    elif kind == "image":
        shutil.copy(next((trained / "data" / "test" / "a").iterdir()), path)
    elif kind == "json":
        path.write_text('{"model": "resnet8"}')
    else:
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    code, _, err = run_cli(capsys, "eval", "--checkpoint", str(path))
    line = one_error_line(err)
    names = {"onnx": "ONNX", "image": "an image", "json": "JSON", "torchscript": "TorchScript"}
    assert code == 2 and names[kind] in line
    assert "weights_only" not in line
