"""`--amp auto` on the CPU: bf16 exactly where the CPU has native bf16, with the reason printed and saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import resnet.runtime as devices
from resnet.config import SystemConfig
from resnet.runtime import cpu_flags, resolve_runtime
from resnet.train import load_config, train
from test_train_fake_data import make_fake_bundle

ZEN3 = {"sse4_2", "avx", "avx2", "fma"}  # like this project's 2-core EPYC: no avx512 at all
SAPPHIRE_RAPIDS = ZEN3 | {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}
ZEN4 = ZEN3 | {"avx512f", "avx512_bf16"}


@pytest.mark.parametrize(("flags", "shown"), [(SAPPHIRE_RAPIDS, "amx_bf16"), (ZEN4, "avx512_bf16")])
def test_auto_picks_bf16_on_a_cpu_with_native_bf16(monkeypatch, flags: set[str], shown: str) -> None:
    monkeypatch.setattr(devices, "cpu_flags", lambda: set(flags))
    runtime = resolve_runtime(SystemConfig(device="cpu"))
    assert runtime.amp_dtype == torch.bfloat16 and runtime.precision == "bf16"
    assert runtime.amp_reason.startswith("bf16 autocast") and shown in runtime.amp_reason
    assert not runtime.needs_grad_scaler  # bf16 has fp32's range: no loss scaling


def test_auto_keeps_fp32_without_native_bf16(monkeypatch) -> None:
    monkeypatch.setattr(devices, "cpu_flags", lambda: set(ZEN3))
    runtime = resolve_runtime(SystemConfig(device="cpu"))
    assert runtime.amp_dtype is None and runtime.precision == "fp32"
    assert "no native bf16" in runtime.amp_reason and "emulated" in runtime.amp_reason


def test_explicit_choices_say_why(monkeypatch) -> None:
    monkeypatch.setattr(devices, "cpu_flags", lambda: set(ZEN3))
    forced = resolve_runtime(SystemConfig(device="cpu", amp="bf16"))
    assert forced.amp_dtype == torch.bfloat16 and "slower than fp32" in forced.amp_reason
    monkeypatch.setattr(devices, "cpu_flags", lambda: set(ZEN4))
    assert "slower" not in resolve_runtime(SystemConfig(device="cpu", amp="bf16")).amp_reason
    off = resolve_runtime(SystemConfig(device="cpu", amp="off"))
    assert off.amp_dtype is None and off.amp_reason == "fp32: --amp off"


def test_cpu_flags_come_from_cpuinfo_and_torch(monkeypatch, tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert {"avx2", "avx512_bf16"} <= cpu_flags(cpuinfo)
    assert cpu_flags(tmp_path / "missing") == set()  # not Linux: torch's probes only
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert "amx_bf16" in cpu_flags(tmp_path / "missing")


@pytest.mark.parametrize(("flags", "precision"), [(ZEN4, "bf16"), (ZEN3, "fp32")])
def test_choice_is_printed_and_saved(monkeypatch, capsys, tmp_path: Path, flags: set[str], precision: str) -> None:
    monkeypatch.setattr(devices, "cpu_flags", lambda: set(flags))
    config = load_config(
        "fast",
        {
            "model.name": "resnet8",
            "data.dataset": "fake",
            "data.batch_size": 16,
            "train.iterations": 2,
            "run_dir": str(tmp_path / "run"),
            "log.progress": "plain",
            "log.tensorboard": False,
            "system.device": "cpu",
        },
    )
    summary = train(config, data=make_fake_bundle(num_train=32, batch_size=16))
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["amp"] == summary["amp"] == precision
    assert saved["amp_reason"] == summary["amp_reason"]
    assert saved["amp_reason"].startswith({"bf16": "bf16 autocast:", "fp32": "fp32:"}[precision])
    printed = capsys.readouterr()
    assert f"precision: {saved['amp_reason']}" in printed.out + printed.err
