"""After training: cases 23-26 of docs/bad-inputs.md (issue 19 items 1's acceptance, 3, 8, 11, 13).

Prediction among extreme images in bounded memory; exports that never replace a checkpoint or a file they did not
create; damaged safetensors sidecars; ONNX export of VGG-19 at 32x32.
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
from torch import nn

from bad_inputs import TRAIN, damage_sidecar, image_folder, one_error_line, png8, run_cli, snapshot
from resnet.export import export_model
from resnet.export.pooling import MatrixAdaptiveAvgPool2d, onnx_compatible_pooling

SRC = str(Path(__file__).resolve().parents[1] / "src")
GIB = 1 << 30


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 1-iteration resnet8 run whose saved preprocessing resizes the shorter side to 256 (as ImageNet
    models do), so a 20000x1 strip would become 256x5,120,000."""
    root = tmp_path_factory.mktemp("after")
    folder = image_folder(root / "folder")
    old = os.environ.get("RESNET_CACHE")
    os.environ["RESNET_CACHE"] = str(root / "cache")
    try:
        from resnet.cli import main

        argv = [*TRAIN, "--dataset", str(folder), "--iterations", "1", "--run-dir", str(root / "run")]
        argv[argv.index("data.pipeline=tensor")] = "data.pipeline=loader"
        sets = ["data.num_workers=0", "data.crop_size=8", "data.eval_resize=256"]
        assert main([*argv, *(a for s in sets for a in ("--set", s))]) == 0
    finally:
        if old is None:
            os.environ.pop("RESNET_CACHE", None)
        else:
            os.environ["RESNET_CACHE"] = old
    return root / "run"


@pytest.fixture
def run_copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def good_images(run: Path) -> list[Path]:
    folder = run.parent / "folder" / "test"
    return [folder / "a" / "0000.jpg", folder / "b" / "0001.jpg"]


# --- 23. resnet predict on a 20000x1 PNG among good images: the good ones predicted, in bounded memory --------------


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


# --- 24. export never replaces the checkpoint or a file it did not create -------------------------------------------


def test_export_never_replaces_the_checkpoint_it_exports(capsys, run_copy: Path) -> None:
    before = snapshot(run_copy)
    for extra in ([], ["--force"]):
        argv = ["export", "--checkpoint", str(run_copy / "last.pt"), "--format", "onnx", "--output"]
        code, _, err = run_cli(capsys, *argv, str(run_copy / "last.pt"), *extra)
        assert code == 2
        assert f"{run_copy / 'last.pt'} is the checkpoint being exported" in one_error_line(err)
        assert snapshot(run_copy) == before


def test_export_never_replaces_the_sidecar_of_the_weights_it_exports(capsys, exported: Path, tmp_path: Path) -> None:
    weights = Path(shutil.copy(exported, tmp_path / "model.safetensors"))
    shutil.copy(exported.with_suffix(".json"), tmp_path / "model.json")
    before = snapshot(tmp_path)
    argv = ["export", "--checkpoint", str(weights), "--format", "onnx", "--output", str(tmp_path / "model.json")]
    code, _, err = run_cli(capsys, *argv, "--force")
    assert code == 2
    assert f"{tmp_path / 'model.json'} is the sidecar of the weights being exported" in one_error_line(err)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("fmt", "output", "taken", "message"),
    [
        ("torchvision", "best.pt", "best.pt", "exists and is a PyTorch checkpoint this export did not create"),
        ("safetensors", "notes.safetensors", "notes.json", "the JSON sidecar the safetensors export writes"),
        ("safetensors", "summary.safetensors", "summary.json", "is a file of a run directory"),
        ("onnx", "model.onnx", "model.onnx", "exists and is a file this export did not create"),
    ],
)
def test_export_refuses_to_replace_an_existing_file(capsys, run_copy, fmt, output, taken, message) -> None:
    (run_copy / taken).exists() or (run_copy / taken).write_text('{"mine": true}\n')
    before = snapshot(run_copy)
    argv = ["export", "--checkpoint", str(run_copy / "last.pt"), "--format", fmt, "--output", str(run_copy / output)]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    line = one_error_line(err)
    assert f"{run_copy / taken}" in line and message in line and "--force" in line
    assert snapshot(run_copy) == before  # neither the taken file nor a half of the export


def test_force_replaces_through_a_temporary_file(capsys, run_copy: Path) -> None:
    (run_copy / "last.json").write_text("{}\n")
    argv = ["export", "--checkpoint", str(run_copy / "last.pt"), "--format", "safetensors"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "last.json" in one_error_line(err)
    code, _, err = run_cli(capsys, *argv, "--force")
    assert code == 0, err
    assert '"class_names"' in (run_copy / "last.json").read_text()
    code, _, err = run_cli(capsys, *argv)  # a second export to the same files also needs --force
    assert code == 2 and "--force" in one_error_line(err)
    assert not [p for p in run_copy.iterdir() if "export-tmp" in p.name]


def test_a_failed_verification_leaves_nothing(tmp_path: Path) -> None:
    from resnet.export.onnx import ExportError
    from test_export import meta_for

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    (tmp_path / "m.onnx").write_bytes(b"older")
    with pytest.raises(ExportError, match=r"so .*m\.onnx was not written"):
        export_model(model, meta_for("resnet8", 16, num_classes=5), "onnx", tmp_path / "m.onnx", force=True,
                     tolerance=-1.0)  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"] and (tmp_path / "m.onnx").read_bytes() == b"older"


# --- 25. damaged safetensors sidecars and weights ------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from resnet.export import export_checkpoint

    out = tmp_path_factory.mktemp("exported") / "model.safetensors"
    export_checkpoint(run / "best.pt", "safetensors", out)
    return out


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("std-zero", "preprocessing.std = [0.0, 0.0, 0.0]: a standard deviation must be positive"),
        ("std-one-zero", "preprocessing.std = [0.25, 0.0, 0.25]: a standard deviation must be positive"),
        ("std-negative", "a standard deviation must be positive"),
        ("mean-two-values", "has 2 preprocessing.mean values for 3-channel images"),
        ("invalid-json", "is not valid JSON ("),
        ("not-utf8", "is not text (byte 0 is not UTF-8)"),
        ("list", "holds a JSON list, not a JSON object with the model metadata"),
        ("no-model", 'has no "model" entry naming the network'),
        ("fewer-classes", "names 2 classes but the model has 3 outputs"),
        ("more-classes", "names 5 classes but the model has 3 outputs"),
        ("garbage-header", "is not a readable safetensors file"),
        ("truncated", "is not a readable safetensors file"),
    ],
)
def test_a_damaged_sidecar_is_one_line(capsys, exported: Path, run: Path, tmp_path: Path, damage, message) -> None:
    weights = tmp_path / "model.safetensors"
    shutil.copy(exported, weights)
    shutil.copy(exported.with_suffix(".json"), weights.with_suffix(".json"))
    damage_sidecar(weights, damage)
    before = snapshot(tmp_path)
    code, out, err = run_cli(capsys, "predict", str(good_images(run)[0]), "--checkpoint", str(weights))
    assert code == 2 and "nan%" not in out
    line = one_error_line(err)
    assert line.startswith("resnet predict: error: ") and message in line, line
    assert str(weights.with_suffix(".json") if "error: the sidecar " in line else weights) in line
    assert snapshot(tmp_path) == before


def test_an_intact_sidecar_still_predicts(capsys, exported: Path, run: Path) -> None:
    code, out, err = run_cli(capsys, "predict", str(good_images(run)[0]), "--checkpoint", str(exported))
    assert code == 0, err
    assert "%" in out and "nan" not in out


# --- 26. ONNX export of VGG-19 trained on 32x32 images --------------------------------------------------------------


@pytest.mark.parametrize(
    ("size_in", "size_out"), [((1, 1), (7, 7)), ((5, 5), (3, 3)), ((10, 13), (7, 7)), ((2, 9), (7, 4))]
)
def test_matrix_pooling_equals_adaptive_pooling(size_in, size_out) -> None:
    x = torch.randn(2, 3, *size_in)
    got = MatrixAdaptiveAvgPool2d(size_in, size_out)(x)
    torch.testing.assert_close(got, nn.AdaptiveAvgPool2d(size_out)(x), rtol=0, atol=1e-6)


def test_pooling_that_does_not_divide_exports_to_onnx(tmp_path: Path) -> None:
    from test_export import meta_for

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d((3, 3)), nn.Flatten(), nn.Linear(36, 5))
    meta = {**meta_for("resnet8", 5, num_classes=5), "input_size": [3, 5, 5]}  # 5x5 -> 3x3: overlapping bins
    result = export_model(model, meta, "onnx", tmp_path / "m.onnx", dynamic_batch=True)
    assert result["max_abs_diff"] < 1e-5
    assert isinstance(model[1], nn.AdaptiveAvgPool2d)  # the model is restored after the export
    with onnx_compatible_pooling(model, torch.zeros(1, 3, 8, 8)) as swapped:  # 8 -> 3 still does not divide
        assert swapped == 1 and isinstance(model[1], MatrixAdaptiveAvgPool2d)
    with onnx_compatible_pooling(model, torch.zeros(1, 3, 9, 9)) as swapped:  # 9 -> 3 does: exported natively
        assert swapped == 0


@pytest.mark.slow
def test_vgg19_trained_on_32x32_exports_to_onnx(capsys, run: Path, tmp_path: Path) -> None:
    from resnet.models import create_model, resolve_options
    from resnet.runs.checkpoint import load_checkpoint, save_atomic

    payload = load_checkpoint(run / "best.pt")
    meta = payload["meta"]
    meta["model"] = {"name": "vgg19", "options": resolve_options("vgg19", num_classes=3)}
    meta["input_size"] = [3, 32, 32]
    meta["preprocessing"].update(crop=[32, 32], resize=36)
    payload["model"] = create_model("vgg19", num_classes=3).state_dict()
    payload.pop("optimizer", None)
    save_atomic(payload, tmp_path / "vgg19.pt")
    del payload
    before = snapshot(tmp_path)
    code, out, err = run_cli(capsys, "export", "--checkpoint", str(tmp_path / "vgg19.pt"), "--format", "onnx",
                             "--dynamic-batch")  # fmt: skip
    assert code == 0, err
    assert f"wrote {tmp_path / 'vgg19.onnx'}" in out and "checked with onnxruntime" in out
    assert "Traceback" not in err
    assert {k: v for k, v in snapshot(tmp_path).items() if k != "vgg19.onnx"} == before
