"""ONNX export, verified with onnxruntime against the PyTorch model."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from resnet.errors import ConfigError, ResNetError
from resnet.export import EXPORTERS


class ExportError(ResNetError, RuntimeError):
    """An export that failed or does not reproduce the PyTorch outputs."""


DYNAMO_INSTALL = "pip install 'resnet[onnx-dynamo]' (or: pip install onnxscript)"


def check_exporter(exporter: str) -> None:
    """A known exporter whose dependencies are installed, or a one-line error saying what to do."""
    if exporter not in EXPORTERS:
        raise ConfigError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    if exporter == "dynamo" and importlib.util.find_spec("onnxscript") is None:
        raise ExportError(
            f"--exporter dynamo needs the onnxscript package, which is not installed: {DYNAMO_INSTALL}; "
            "or use the default --exporter legacy (same graph for these networks)"
        )


def export_onnx(
    model: nn.Module,
    example: Tensor,
    path: str | Path,
    *,
    dynamic_batch: bool = False,
    exporter: str = "legacy",
    opset: int = 17,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``model`` (eval mode) as ONNX with input ``input`` and output ``logits``.

    ``exporter="legacy"`` (default) is the TorchScript-based exporter: about a second for a ResNet, works
    offline on every torch >= 2.4 and needs only ``onnx``. ``"dynamo"`` uses ``torch.export`` (torch >= 2.6, needs
    ``onnxscript``: the ``onnx-dynamo`` extra; about 10x slower to export, same graph for these networks).
    ``metadata`` goes into the model's ``metadata_props`` (``InferenceSession.get_modelmeta().custom_metadata_map``).
    """
    check_exporter(exporter)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from resnet.export.pooling import onnx_compatible_pooling

    model = model.eval()
    names: dict[str, Any] = {"input_names": ["input"], "output_names": ["logits"]}
    # The graph's height and width are fixed, so pooling to a size that does not divide the input (VGG-19 on
    # 32x32 images) can be exported as matrix products.
    with onnx_compatible_pooling(model, example), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and tracer notes
        if exporter == "legacy":
            axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
            torch.onnx.export(
                model, (example,), str(path), dynamo=False, opset_version=opset, dynamic_axes=axes, **names
            )
        else:
            shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
            program = torch.onnx.export(
                model, (example,), dynamo=True, dynamic_shapes=shapes, verbose=False, optimize=True, **names
            )
            if program is None:
                raise ExportError("torch.onnx.export (dynamo) returned no program; try --exporter legacy")
            program.save(str(path))
    if metadata:
        import onnx

        graph = onnx.load(str(path))
        onnx.helper.set_model_props(graph, metadata)  # read back by onnxruntime's get_modelmeta()
        onnx.save(graph, str(path))
    return path


def verify_onnx(path: str | Path, model: nn.Module, inputs: list[Tensor]) -> float:
    """Max absolute difference between onnxruntime's and PyTorch's outputs over ``inputs``."""
    try:
        import onnxruntime as ort
    except ImportError as error:  # pragma: no cover - a dependency
        raise ExportError("onnxruntime is not installed; `pip install onnxruntime` to verify the export") from error
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    worst = 0.0
    model = model.eval()
    for x in inputs:
        with torch.no_grad():
            expected = model(x.cpu()).float()
        got = torch.from_numpy(session.run(None, {name: x.cpu().numpy()})[0])
        if got.shape != expected.shape:
            raise ExportError(f"ONNX output shape {list(got.shape)} differs from PyTorch's {list(expected.shape)}")
        worst = max(worst, float((got - expected).abs().max()))
    return worst
