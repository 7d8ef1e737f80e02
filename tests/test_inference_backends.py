"""Every backend of ``prepare_for_inference`` (eager, torch.compile, ONNX Runtime) and the plain path compute what
the eval-mode model computes; the options that cannot work here fail with one clear error."""

from __future__ import annotations

import pytest
import torch

import resnet
import resnet.runtime as runtime
from resnet.errors import ConfigError
from resnet.inference.fast import PLAIN, describe, inference_options, prepare_for_inference, resolve_backend
from synthetic import trained_in_eval


def _model(**options: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return trained_in_eval(resnet.create_model("resnet8", num_classes=10, **options))


def _close(out: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_one_prepare_for_inference() -> None:
    import resnet.inference

    assert resnet.inference.prepare_for_inference is prepare_for_inference
    assert resnet.prepare_for_inference is prepare_for_inference


def test_plain_path_is_the_model_as_trained() -> None:
    model = _model()
    plain = prepare_for_inference(model, "cpu", **PLAIN)
    assert plain.choices["plain"] and plain.choices["folded_batchnorms"] == 0 and not plain.choices["channels_last"]
    assert describe(plain.choices).startswith("cpu (plain")
    images = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(plain(images), model(images))
    assert inference_options(fast=False) == PLAIN
    assert inference_options(precision="fp32", backend="onnxruntime") == {"precision": "fp32", "backend": "onnxruntime"}
    assert inference_options() == {"precision": "auto", "backend": "auto"}
    with pytest.raises(ConfigError, match="drop --precision/--backend"):
        inference_options(fast=False, backend="compile")


def test_onnxruntime_backend_matches_for_any_batch_and_size() -> None:
    pytest.importorskip("onnxruntime")
    model = _model()
    fast = prepare_for_inference(model, "cpu", backend="onnxruntime")
    assert fast.choices["backend"] == "onnxruntime" and fast.choices["precision"] == "fp32"
    assert not fast.choices["channels_last"] and "ONNX Runtime" in describe(fast.choices)
    for shape in ((8, 3, 32, 32), (3, 3, 40, 24)):  # the traced graph has dynamic batch, height and width
        images = torch.randn(*shape)
        with torch.inference_mode():
            out, expected = fast(images), model(images)
        assert out.dtype == torch.float32
        _close(out, expected)
    backbone = _model(features_only=True)
    features = prepare_for_inference(backbone, "cpu", backend="onnxruntime")
    images = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        for a, b in zip(features(images), backbone(images), strict=True):
            _close(a, b)


def test_onnxruntime_backend_scores_a_fully_convolutional_model() -> None:
    pytest.importorskip("onnxruntime")
    fcn = resnet.fully_convolutional(_model())
    fast = prepare_for_inference(fcn, "cpu", backend="onnxruntime")
    images = torch.randn(2, 3, 48, 40)
    with torch.inference_mode():
        _close(fast(images), fcn(images))


def test_auto_backend_is_onnxruntime_for_fp32_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    model = _model()
    fp32 = prepare_for_inference(model, "cpu", backend="auto", precision="fp32")
    assert fp32.choices["backend"] == "onnxruntime" and "fastest for fp32" in describe(fp32.choices)
    bf16 = prepare_for_inference(model, "cpu", backend="auto", precision="bf16")
    assert bf16.choices["backend"] == "eager" and bf16.choices["channels_last"]
    assert resolve_backend("auto", torch.device("cuda"), torch.bfloat16)[0] == "eager"

    def broken_export(*args: object, **kwargs: object) -> None:
        raise RuntimeError("untraceable")

    monkeypatch.setattr(torch.onnx, "export", broken_export)  # auto falls back to eager, and says why
    fallback = prepare_for_inference(model, "cpu", backend="auto", precision="fp32")
    assert fallback.choices["backend"] == "eager" and "export failed (untraceable)" in describe(fallback.choices)
    images = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        _close(fallback(images), model(images))
    with pytest.raises(ConfigError, match="could not export this model"):
        prepare_for_inference(model, "cpu", backend="onnxruntime")


def test_backend_options_that_cannot_run_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    with pytest.raises(ConfigError, match="backend must be one of auto, eager, compile, onnxruntime"):
        prepare_for_inference(model, "cpu", backend="tensorrt")
    with pytest.raises(ConfigError, match="runs on the CPU only"):
        prepare_for_inference(model, "cuda", backend="onnxruntime")
    with pytest.raises(ConfigError, match="fp32 only"):
        prepare_for_inference(model, "cpu", backend="onnxruntime", precision="bf16")
    with pytest.raises(ConfigError, match="takes NCHW inputs"):
        prepare_for_inference(model, "cpu", backend="onnxruntime", channels_last=True)
    monkeypatch.setattr(runtime.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(ConfigError, match="needs a C\\+\\+ compiler"):
        prepare_for_inference(model, "cpu", backend="compile")


@pytest.mark.slow
@pytest.mark.skipif(not runtime.has_cpp_compiler(), reason="torch.compile on the CPU needs a C++ compiler")
def test_compile_backend_matches_the_model() -> None:
    """Two compilations (~20 s on one core): the first batch, then dynamic shapes for a smaller last batch."""
    model = _model()
    fast = prepare_for_inference(model, "cpu", backend="compile", precision="fp32")
    assert fast.choices["backend"] == "compile" and "torch.compile" in describe(fast.choices)
    images = torch.randn(8, 3, 32, 32)
    with torch.inference_mode():
        _close(fast(images), model(images))
        _close(fast(images[:3]), model(images[:3]))
