"""What runs a prepared (BN-folded) model: eager PyTorch, ``torch.compile`` (inductor) or ONNX Runtime.

``prepare_for_inference(..., backend=...)`` picks one; each returns a callable from a batch (already in the
prepared dtype, device and memory format) to the network's raw outputs. benchmarks/inference.py measures them
against each other and against torchvision's eager fp32 NCHW ResNet-50 (docs/performance.md). ``"auto"`` (the
default of ``resnet eval``/``predict``) takes ONNX Runtime for fp32 on the CPU, where it measured fastest
(1.4-1.7x our eager channels-last path on an AVX2 CPU, ResNet-20 to ResNet-50, batch 1 to 256), eager elsewhere.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from resnet.errors import ConfigError
from resnet.inference import BACKENDS
from resnet.runtime import has_cpp_compiler

Runner = Callable[[torch.Tensor], Any]


def check_backend(backend: str, device: torch.device) -> None:
    """A clear error for a backend that cannot run here, before any work is done."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "onnxruntime":
        if device.type != "cpu":
            raise ConfigError(f"the onnxruntime backend runs on the CPU only, not {device}; use eager or compile")
        missing = onnxruntime_missing()
        if missing:
            raise ConfigError(
                f"the onnxruntime backend needs onnx and onnxruntime ({missing} is missing): "
                "`pip install onnx onnxruntime`, or use --backend eager"
            )
    if backend == "compile" and device.type == "cpu" and not has_cpp_compiler():
        raise ConfigError(
            "torch.compile on the CPU needs a C++ compiler (g++ or clang++ on PATH, or $CXX); install one, "
            "or use --backend eager"
        )


def resolve_backend(backend: str, device: torch.device, dtype: torch.dtype) -> tuple[str, str]:
    """The backend ``"auto"`` stands for here, and why: ONNX Runtime for fp32 on the CPU when it is installed."""
    if backend != "auto":
        return backend, "requested"
    if device.type != "cpu":
        return "eager", f"eager on {device.type}"
    if dtype != torch.float32:
        return "eager", "eager: ONNX Runtime runs fp32 only"
    missing = onnxruntime_missing()
    if missing:
        return "eager", f"eager: {missing} is not installed"
    return "onnxruntime", "ONNX Runtime: measured fastest for fp32 on the CPU"


def onnxruntime_missing() -> str | None:
    """Which of onnx (the exporter writes through it) and onnxruntime is not installed; None when both are."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as error:
        return error.name or "onnxruntime"
    return None


def compiled_runner(model: nn.Module) -> Runner:
    """``torch.compile`` with inductor's freezing: weights become constants, so convolutions get oneDNN's
    prepacked weights on the CPU and constant folding runs once. Compiles on the first call (and once more, with
    dynamic shapes, when the input shape first changes); callers run it without autograd."""
    return torch.compile(model, options={"freezing": True})


class OnnxRuntimeRunner:
    """The model exported to ONNX in memory and run by an ONNX Runtime CPU session with torch's thread count.

    Batch, height and width are dynamic, so the last (smaller) batch and multi-scale inputs need no new session.
    Inputs are fp32 NCHW on the CPU; outputs come back as torch tensors (one, or a list for a feature backbone).
    """

    def __init__(self, model: nn.Module, example: torch.Tensor, opset: int = 17) -> None:
        import onnxruntime as ort

        model = model.eval().float().cpu()
        with torch.no_grad():
            reference = model(example)
        self.many = not isinstance(reference, torch.Tensor)
        outputs = [f"output{i}" for i in range(len(reference))] if self.many else ["output"]
        axes: dict[str, dict[int, str]] = {"input": {0: "batch", 2: "height", 3: "width"}}
        axes.update({name: {0: "batch"} for name in outputs})
        buffer = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and tracer notes
            torch.onnx.export(
                model, (example,), buffer,  # type: ignore[arg-type]  # torch.onnx.export writes to file objects too
                dynamo=False, opset_version=opset, input_names=["input"],
                output_names=outputs, dynamic_axes=axes,
            )  # fmt: skip
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: torch.Tensor) -> Any:
        feed = {"input": images.detach().cpu().float().contiguous().numpy()}
        outputs = [torch.from_numpy(o) for o in self.session.run(None, feed)]
        return outputs if self.many else outputs[0]


def example_input(model: nn.Module, size: int = 64) -> torch.Tensor:
    """A small batch the model accepts (its ``in_chans``), for tracing the ONNX graph."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    channels = conv.in_channels if conv is not None else 3
    return torch.zeros(2, channels, size, size)
