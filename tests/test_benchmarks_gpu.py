"""Section 6 of the benchmark runner (the GPU section), run on the CPU with a tiny model and a tiny JPEG data set.

The GPU's numbers need a GPU; the section's logic does not: the variants and their interleaved timing, MFU, the
budget and the wall-clock caps, the time-to-accuracy stopping rules and the rows of the table are checked here.
"""

from __future__ import annotations

import argparse
import io
import re
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

MAX_TEST_ACCURACY = 100.0 * 17 / 18  # the gray image is in both test classes: one of its two copies is wrong


@pytest.fixture
def gpu():
    from resnet.benchmarks import gpu

    return gpu


def _jpeg(value: int, rng: np.random.Generator, noise: int = 20) -> bytes:
    pixels = np.clip(value + rng.integers(-noise, noise + 1, (32, 32, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/cifar10-jpeg/{train,test}.tar.gz``: dark vs light images; the test set adds one gray image to both
    classes, so that the best possible test accuracy is 17/18 (94.4%)."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "cifar10-jpeg"
    folder.mkdir()
    rng = np.random.default_rng(0)
    gray = _jpeg(128, rng, noise=0)
    for split, count in (("train", 48), ("test", 8)):
        with tarfile.open(folder / f"{split}.tar.gz", "w:gz") as tar:
            for cls, value in (("dark", 40), ("light", 215)):
                files = [(f"{i:04d}.jpg", _jpeg(value, rng)) for i in range(count)]
                files += [("gray.jpg", gray)] if split == "test" else []
                for name, data in files:
                    info = tarfile.TarInfo(f"{split}/{cls}/{name}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return root


def _plan(gpu, data: Path, **changes):
    tiny = dict(
        device="cpu", budget_s=300.0, peak_tflops=0.5, data_dir=str(data), model="resnet8", image_size=16, batch=2,
        num_classes=10, steps=1, warmup=0, repeats=2, compile_modes=("default",), compile_backend="eager",
        compile_estimate_s=0.0, cifar_model="resnet8", target=90.0, epochs=8, ours_batch=16, common_batch=16,
        workers=0, cifar_compile=False, prepare_in_background=False,
    )  # fmt: skip
    return gpu.GpuPlan(**{**tiny, **changes})


def test_training_throughput_rows_have_ratios_goals_and_mfu(gpu, tiny_cifar: Path, capsys) -> None:
    import resnet

    rows = gpu.run(_plan(gpu, tiny_cifar, cifar=False))
    out = capsys.readouterr().out
    names = ["eager fp32 NCHW", "eager bf16 autocast NCHW", "ours eager", "ours compiled (default)"]
    assert len(rows) == 4 and all(name in row.name for name, row in zip(names, rows, strict=True))
    base = rows[0].ours
    assert base and all(r.base == base and r.ours and r.ours > 0 for r in rows)
    assert [r.goal for r in rows] == [None, None, None, gpu.GOAL_RATIO]  # the goal is ours compiled
    flops = 6 * resnet.model_info("resnet8", (3, 16, 16), num_classes=10)["macs"]
    for row in rows:  # MFU = flops/image x images/s / peak, printed with one decimal
        shown = float(re.search(r"MFU (\d+\.\d)%", row.note).group(1))
        assert shown == pytest.approx(100 * row.ours * flops / 0.5e12, abs=0.051)
    assert "peak assumed for MFU: 0.5 TFLOP/s (given by --gpu-peak-tflops)" in out
    assert "2 interleaved round(s) of 1 steps" in out
    assert re.search(r"part 1, resnet8 training throughput: took [\d.]+ s", out)


def test_both_sides_stop_at_the_first_evaluation_that_reaches_the_target(gpu, tiny_cifar: Path, capsys) -> None:
    rows = gpu.run(_plan(gpu, tiny_cifar, throughput=False))
    out = capsys.readouterr().out
    assert len(rows) == 1, [r.name for r in rows]
    row = rows[0]
    assert "time to 90% test acc" in row.name and row.lower and row.goal == gpu.GOAL_CIFAR_SPEEDUP
    assert row.ours and row.base and row.ratio == pytest.approx(row.base / row.ours)
    assert re.search(r"ours: 90% at epoch \d+ in [\d.]+ s; common: 90% at epoch \d+ in [\d.]+ s", row.note), row.note
    for curve in re.findall(r"test accuracy after each epoch: ([\d. ]+)", out):  # every dark and light image right
        accuracies = [float(a) for a in curve.split()]
        assert accuracies[-1] >= 90 and all(a < 90 for a in accuracies[:-1]) and len(accuracies) < 8
    assert re.search(r"part 2, common recipe: took [\d.]+ s", out)


def test_a_target_not_reached_is_reported_with_the_best_and_a_common_level(gpu, tiny_cifar: Path, capsys) -> None:
    from resnet.benchmarks.common import print_table

    rows = gpu.run(_plan(gpu, tiny_cifar, throughput=False, target=95.0, epochs=2))
    assert len(rows) == 2
    missed, common_level = rows
    assert missed.ours is None and missed.base is None and missed.ratio is None
    notes = re.findall(
        r"95% not reached in \d+ s \(best ([\d.]+)% at epoch \d, [\d.]+ s; stopped: epochs\)", missed.note
    )
    assert len(notes) == 2 and all(float(best) <= MAX_TEST_ACCURACY + 1e-6 for best in notes)
    level = float(re.search(r"time to ([\d.]+)% \(the lower best\)", common_level.name).group(1))
    assert level == pytest.approx(min(float(best) for best in notes), abs=0.01)
    assert common_level.ours and common_level.base and common_level.goal is None
    capsys.readouterr()
    print_table(rows)
    table = capsys.readouterr().out
    assert ">=3x MISSED" in table and "(the lower best)" in table


@pytest.mark.slow
def test_an_exhausted_budget_skips_and_caps_instead_of_overrunning(gpu, tiny_cifar: Path, capsys) -> None:
    plan = _plan(gpu, tiny_cifar, budget_s=0.0, epochs=50, cifar_compile=True, cifar_compile_estimate_s=1e9)
    plan.prepare_in_background = True  # the data is prepared in a spawned process while part 1 runs
    rows = gpu.run(plan)
    out = capsys.readouterr().out
    assert all(r.ours is None and r.note.startswith("skipped") for r in rows[:4])
    assert rows[4].ours is None and rows[4].base is None
    assert len(re.findall(r"90% not reached in \d+ s \(no evaluation; stopped: cap\)", rows[4].note)) == 2
    assert "ours + torch.compile: skipped" in out
    assert "one-time costs, outside both clocks (in a background process during part 1)" in out


def test_a_failing_variant_or_run_is_reported_and_the_rest_goes_on(gpu, tiny_cifar: Path) -> None:
    import torch

    from resnet.benchmarks.steps import BASELINE, Variant

    bad = Variant("ours compiled (no-such-mode)", compile_mode="no-such-mode", ours=True)
    plan = _plan(gpu, tiny_cifar, repeats=1, compile_backend="inductor")
    measured, skipped = gpu.measure(plan, [bad, BASELINE], torch.device("cpu"), deadline=time.perf_counter() + 600)
    assert [m.variant.name for m in measured] == [BASELINE.name] and measured[0].rate > 0
    assert re.match(r"failed after \d+ s: RuntimeError: Unrecognized mode=no-such-mode", skipped[bad.name])
    rows = gpu.run(_plan(gpu, tiny_cifar, throughput=False, cifar_model="resnet7"))  # no such CIFAR depth
    assert len(rows) == 1 and rows[0].ours is None and rows[0].base is None
    assert len(re.findall(r"failed: \w+Error: ", rows[0].note)) == 2, rows[0].note


def test_compile_modes_are_checked_when_parsed() -> None:
    from resnet.benchmarks.runner import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(
        ["--gpu-compile-modes", "max-autotune-no-cudagraphs,reduce-overhead"]
    ).gpu_compile_modes == (
        "max-autotune-no-cudagraphs",
        "reduce-overhead",
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["--gpu-compile-modes", "default,fast"])


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H200", 989.0),
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA A10", 125.0),
        ("NVIDIA L40S", 362.0),
        ("NVIDIA A10G", None),  # not "A10": unknown, MFU needs --gpu-peak-tflops
        ("cpu (AMD EPYC)", None),
    ],
)
def test_card_peaks_match_whole_names(gpu, name: str, peak: float | None) -> None:
    assert gpu.card_peak(name)[0] == peak
    assert gpu.card_peak(name, 100.0) == (100.0, "given by --gpu-peak-tflops")
