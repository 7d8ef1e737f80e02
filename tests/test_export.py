"""Export formats reproduce PyTorch; BN folding; torchvision layout round trip."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch
import torchvision

import resnet
from resnet.errors import ConfigError
from resnet.export import export_model, torchvision_state_dict
from resnet.export.onnx import ExportError
from resnet.models import resolve_options
from resnet.models.fuse import count_batchnorms
from synthetic import trained_in_eval


def meta_for(name: str, size: int, **options: object) -> dict:
    resolved = resolve_options(name, **options)
    return {
        "version": 1,
        "model": {"name": name, "options": resolved},
        "class_names": [f"c{i}" for i in range(resolved["num_classes"])],
        "input_size": [resolved["in_chans"], size, size],
        "preprocessing": {"mode": "RGB", "in_chans": 3, "resize": size, "crop": [size, size], "mean": [0.5] * 3,
                          "std": [0.25] * 3, "mean_image": None},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("name", "options", "size"),
    [("resnet8", {}, 16), ("resnet14", {"shortcut": "B", "preact": True}, 16), ("resnet50", {}, 64)],
)
def test_fused_equals_unfused(name: str, options: dict, size: int) -> None:
    torch.manual_seed(0)
    model = trained_in_eval(resnet.create_model(name, num_classes=6, **options))
    fused = resnet.fuse_conv_bn(model)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = model(x)
        # 1e-5 of the logits' scale (random deep nets give logits far from O(1), fp32 rounding scales with them)
        torch.testing.assert_close(fused(x), expected, rtol=0, atol=1e-5 * max(1.0, float(expected.abs().max())))
    assert count_batchnorms(fused) < count_batchnorms(model)
    if not options.get("preact"):
        assert count_batchnorms(fused) == 0  # every BN follows a convolution in post-activation nets
    assert count_batchnorms(model) > 0, "the original is left untouched"


@pytest.mark.parametrize("fuse_bn", [False, True])
def test_onnx_and_torchscript_equal_pytorch(tmp_path: Path, fuse_bn: bool) -> None:
    import onnxruntime

    torch.manual_seed(0)
    model = trained_in_eval(resnet.create_model("resnet8", num_classes=5))
    meta = meta_for("resnet8", 16, num_classes=5)
    result = export_model(model, meta, "onnx", tmp_path / "m.onnx", dynamic_batch=True, fuse_bn=fuse_bn)
    assert result["max_abs_diff"] < 1e-4
    # independently of the built-in check: onnxruntime on another batch size
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(5, 3, 16, 16)
    got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    with torch.no_grad():
        torch.testing.assert_close(got, model(x), rtol=0, atol=1e-4)

    result = export_model(model, meta, "torchscript", tmp_path / "m.ts", fuse_bn=fuse_bn)
    scripted = torch.jit.load(str(tmp_path / "m.ts"))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=0, atol=1e-5)
    assert result["max_abs_diff"] < 1e-5


def test_onnx_and_torchscript_files_carry_classes_input_size_and_preprocessing(tmp_path: Path) -> None:
    import onnxruntime

    model = trained_in_eval(resnet.create_model("resnet8", num_classes=3))
    meta = meta_for("resnet8", 16, num_classes=3)
    export_model(model, meta, "onnx", tmp_path / "m.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    onnx_props = session.get_modelmeta().custom_metadata_map
    export_model(model, meta, "torchscript", tmp_path / "m.ts")
    extra = {"model": "", "class_names": "", "input_size": "", "preprocessing": ""}
    torch.jit.load(str(tmp_path / "m.ts"), _extra_files=extra)
    for props in (onnx_props, extra):
        assert json.loads(props["class_names"]) == ["c0", "c1", "c2"]
        assert json.loads(props["input_size"]) == [3, 16, 16]
        assert json.loads(props["preprocessing"]) == meta["preprocessing"]
        assert json.loads(props["model"])["name"] == "resnet8"


def test_weights_files_get_the_users_umask(tmp_path: Path) -> None:
    from resnet.runs import save_atomic

    model = trained_in_eval(resnet.create_model("resnet8", num_classes=4))
    old = os.umask(0o002)
    try:
        export_model(model, meta_for("resnet8", 16, num_classes=4), "safetensors", tmp_path / "w.safetensors")
        save_atomic({"model": model.state_dict()}, tmp_path / "last.pt")
    finally:
        os.umask(old)
    for name in ("w.safetensors", "w.json", "last.pt"):
        assert oct((tmp_path / name).stat().st_mode & 0o777) == oct(0o664), name  # not a temporary file's 0600


def test_torchvision_export_round_trips_strictly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = trained_in_eval(resnet.create_model("resnet18", num_classes=3))
    export_model(model, meta_for("resnet18", 64, num_classes=3), "torchvision", tmp_path / "tv.pth")
    state = torch.load(tmp_path / "tv.pth", weights_only=True)
    theirs = torchvision.models.resnet18(num_classes=3).eval()
    theirs.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), model(x), rtol=0, atol=1e-5)
    # and back: torchvision's weights load strictly into ours
    ours = resnet.create_model("resnet18", num_classes=3, weights=tmp_path / "tv.pth").eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("name", "options"), [("resnet20", {}), ("resnet18", {"shortcut": "C"}), ("resnet50", {"stride_on": "1x1"})]
)
def test_torchvision_export_refuses_what_torchvision_cannot_compute(name: str, options: dict) -> None:
    with torch.device("meta"):
        model = resnet.create_model(name, **options)
    with pytest.raises(ConfigError, match="torchvision"):
        torchvision_state_dict(model, meta_for(name, 32, **options))


def test_safetensors_with_sidecar_loads_back(tmp_path: Path) -> None:
    model = trained_in_eval(resnet.create_model("resnet8", num_classes=4))
    result = export_model(model, meta_for("resnet8", 16, num_classes=4), "safetensors", tmp_path / "w.safetensors")
    assert Path(result["sidecar"]).is_file() and result["max_abs_diff"] == 0.0
    _, classes = resnet.load_model(tmp_path / "w.safetensors")
    assert classes == ["c0", "c1", "c2", "c3"]
    with pytest.raises(ConfigError, match="fuse-bn"):
        export_model(model, meta_for("resnet8", 16, num_classes=4), "safetensors", tmp_path / "f.st", fuse_bn=True)


def two_iterations(model: torch.nn.Module, size: int) -> torch.nn.Module:
    """Two SGD steps from the initialisation: BN statistics still near (0, 1), so eval-mode logits are huge."""
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        x, y = torch.randn(8, 3, size, size), torch.randint(0, model.num_classes, (8,))
        loss = torch.nn.functional.cross_entropy(model.train()(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.mark.parametrize(("name", "options", "size"), [("resnet50", {}, 64), ("resnet164", {"preact": True}, 32)])
def test_onnx_accepts_correct_exports_of_large_logits(tmp_path: Path, name: str, options: dict, size: int) -> None:
    import onnxruntime

    model = two_iterations(resnet.create_model(name, **options), size)
    result = export_model(model, meta_for(name, size, **options), "onnx", tmp_path / "m.onnx")
    assert result["output_scale"] > 1e5  # the regime where an absolute 1e-4 refused correct exports
    assert result["max_rel_diff"] < 1e-5 and result["max_abs_diff"] <= 1e-4 * result["output_scale"]
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = model(x)
    assert torch.equal(torch.from_numpy(session.run(None, {"input": x.numpy()})[0]).argmax(1), expected.argmax(1))


def test_a_refused_export_is_not_left_under_the_requested_name(tmp_path: Path) -> None:
    model = trained_in_eval(resnet.create_model("resnet8", num_classes=5))
    meta = meta_for("resnet8", 16, num_classes=5)
    with pytest.raises(ExportError, match="was not written") as error:
        export_model(model, meta, "onnx", tmp_path / "m.onnx", fuse_bn=True, tolerance=0.0)
    assert "\n" not in str(error.value) and "relative" in str(error.value)
    assert list(tmp_path.iterdir()) == []
    # an earlier good export stays as it was
    good = export_model(model, meta, "safetensors", tmp_path / "w.safetensors")
    before = (tmp_path / "w.safetensors").read_bytes()
    with pytest.raises(ExportError):
        export_model(trained_in_eval(model), meta, "safetensors", tmp_path / "w.safetensors", tolerance=-1.0)
    assert (tmp_path / "w.safetensors").read_bytes() == before and Path(good["sidecar"]).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.json", "w.safetensors"]


def test_dynamo_without_onnxscript_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    from resnet.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    model = trained_in_eval(resnet.create_model("resnet8"))
    with pytest.raises(ExportError, match=r"pip install 'resnet\[onnx-dynamo\]'"):
        export_model(model, meta_for("resnet8", 16), "onnx", tmp_path / "m.onnx", exporter="dynamo")
    assert not (tmp_path / "m.onnx").exists()
    code = main(["export", "--checkpoint", str(tmp_path / "any.pt"), "--format", "onnx", "--exporter", "dynamo"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "onnxscript" in err and "Traceback" not in err


NO_ONNXSCRIPT = importlib.util.find_spec("onnxscript") is None


@pytest.mark.skipif(NO_ONNXSCRIPT, reason="onnxscript is not installed (the onnx-dynamo extra)")
def test_dynamo_exporter_with_onnxscript(tmp_path: Path) -> None:
    model = trained_in_eval(resnet.create_model("resnet8", num_classes=5))
    result = export_model(model, meta_for("resnet8", 16, num_classes=5), "onnx", tmp_path / "m.onnx",
                          exporter="dynamo", dynamic_batch=True)  # fmt: skip
    assert result["max_rel_diff"] < 1e-5 and (tmp_path / "m.onnx").is_file()
