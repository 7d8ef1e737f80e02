"""``system.compile``: when ``auto`` compiles, that compiled and eager steps agree, and that a compiled run killed
with SIGKILL resumes bit-identically."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import resnet.runtime as runtime
from resnet.errors import ConfigError
from resnet.runs import load_checkpoint
from resnet.runtime import COMPILE_MIN_ITERATIONS, compile_choice, has_cpp_compiler
from resnet.train import load_config, train
from synthetic import write_image_folder

pytestmark = pytest.mark.slow  # torchrun, subprocesses, compilation or real data: `make check` skips it

CPU = torch.device("cpu")
SRC = Path(__file__).resolve().parents[1] / "src"
needs_compiler = pytest.mark.skipif(not has_cpp_compiler(), reason="torch.compile on the CPU needs a C++ compiler")


def test_auto_compiles_long_cpu_runs_and_gpu_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "has_cpp_compiler", lambda: True)
    assert compile_choice("auto", CPU, COMPILE_MIN_ITERATIONS)[0]
    assert not compile_choice("auto", CPU, 860)[0]  # the demo: 2 epochs of Fashion-MNIST stay eager
    assert compile_choice("auto", torch.device("cuda"), 10)[0]
    assert not compile_choice("off", CPU, 10**6)[0] and compile_choice("on", CPU, 1)[0]
    monkeypatch.setattr(runtime, "has_cpp_compiler", lambda: False)
    compiled, reason = compile_choice("auto", CPU, 10**6)
    assert not compiled and "no C++ compiler" in reason  # falls back, and says so in one line
    with pytest.raises(ConfigError, match="needs a C\\+\\+ compiler"):
        compile_choice("on", CPU, 10)


def _settings(folder: Path, run_dir: Path, compile_step: str, iterations: int) -> dict:
    return {
        "model.name": "resnet8", "data.dataset": str(folder), "data.pipeline": "tensor", "data.batch_size": 8,
        "data.val_size": 8, "train.iterations": iterations, "system.compile": compile_step, "system.threads": 1,
        "system.amp": "off", "log.every_iterations": 1, "log.tensorboard": False, "log.progress": "none",
        "checkpoint.every_iterations": 4, "checkpoint.every_minutes": 0, "eval.every_iterations": 1000,
        "run_dir": str(run_dir),
    }  # fmt: skip


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "tiny", classes=("a", "b"), splits={"train": 24, "test": 4}, size=(8, 8))


def _losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "train_curve.jsonl").read_text().splitlines()
    return [json.loads(line)["train_loss"] for line in lines]


@needs_compiler
@pytest.mark.slow
def test_compiled_and_eager_steps_give_the_same_losses(tiny_folder: Path, tmp_path: Path) -> None:
    eager = train(load_config("cifar-paper", _settings(tiny_folder, tmp_path / "eager", "off", 12)))
    compiled = train(load_config("cifar-paper", _settings(tiny_folder, tmp_path / "compiled", "on", 12)))
    assert "compiled" in compiled["device"] and "compiled" not in eager["device"]
    torch.testing.assert_close(_losses(tmp_path / "compiled"), _losses(tmp_path / "eager"), rtol=1e-3, atol=1e-4)


@needs_compiler
@pytest.mark.slow
def test_a_compiled_run_killed_with_sigkill_resumes_bit_identically(tiny_folder: Path, tmp_path: Path) -> None:
    iterations = 40
    reference = tmp_path / "uninterrupted"
    train(load_config("cifar-paper", _settings(tiny_folder, reference, "on", iterations)))

    run = tmp_path / "killed"
    script = (
        "import sys, time; from resnet.train import load_config, train, Trainer\n"
        "class Slow:\n"
        "    def on_iteration_end(self, trainer, iteration): time.sleep(0.2)\n"
        f"train(load_config('cifar-paper', {_settings(tiny_folder, run, 'on', iterations)!r}), callbacks=[Slow()])\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (run / "last.pt").is_file() or load_checkpoint(run / "last.pt")["iteration"] < 8:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert int(load_checkpoint(run / "last.pt")["iteration"]) < iterations

    train(load_config("cifar-paper", _settings(tiny_folder, run, "on", iterations)), resume=True)
    ours, theirs = load_checkpoint(run / "last.pt")["model"], load_checkpoint(reference / "last.pt")["model"]
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)
