"""Device, precision and memory-format choices: the logic the GPU paths share, checked on the CPU."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import resnet.runtime as devices
from resnet.config import SystemConfig
from resnet.errors import ConfigError
from resnet.runtime import resolve_runtime
from resnet.train import load_config, train
from test_train_fake_data import make_fake_bundle


def test_cpu_defaults(monkeypatch) -> None:
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2"})  # an fp32-only CPU (see test_perf_amp_auto.py)
    runtime = resolve_runtime(SystemConfig(device="cpu"))
    assert runtime.device == torch.device("cpu")
    assert runtime.amp_dtype is None and runtime.channels_last and not runtime.compile
    assert runtime.sync_every == 1 and not runtime.needs_grad_scaler


def test_explicit_choices() -> None:
    runtime = resolve_runtime(SystemConfig(device="cpu", amp="bf16", channels_last="off", sync_every=7))
    assert runtime.amp_dtype == torch.bfloat16 and not runtime.channels_last and runtime.sync_every == 7
    assert "bf16" in runtime.describe()
    with pytest.raises(ConfigError, match="fp16 autocast needs a GPU"):
        resolve_runtime(SystemConfig(device="cpu", amp="fp16"))
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_runtime(SystemConfig(device="tpu:banana"))


def test_auto_device_is_cuda_when_there_is_one() -> None:
    runtime = resolve_runtime(SystemConfig(device="auto"))
    assert runtime.device.type == ("cuda" if torch.cuda.is_available() else runtime.device.type)


def test_bf16_autocast_training_step_runs_and_learns(tmp_path: Path) -> None:
    config = load_config(
        "fast",
        {
            "model.name": "resnet8",
            "data.dataset": "fake",
            "data.batch_size": 32,
            "train.epochs": 2,
            "run_dir": str(tmp_path / "run"),
            "log.progress": "none",
            "system.device": "cpu",
            "system.amp": "bf16",
            "system.channels_last": "on",
        },
    )
    summary = train(config, data=make_fake_bundle())
    assert "bf16" in summary["device"] and "channels-last" in summary["device"]
    assert math.isfinite(summary["test_error"]) and summary["test_error"] < 60  # chance: 75%
