"""ONNX export, verified with onnxruntime against the PyTorch model."""

from __future__ import annotations

import contextlib
import importlib.util
import warnings
from collections.abc import Iterator
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


# Adaptive average pooling that ONNX can express at any input size. The legacy exporter supports
# ``adaptive_avg_pool2d`` only when the output size divides the input size: VGG-19's 7x7 pooling after five max-pools
# of a 32x32 image (a 1x1 map) is refused with a ~100-line traceback. For a graph of fixed height and width the
# pooling is a linear map, ``P_h @ x @ P_w^T`` with the averaging bins of ``AdaptiveAvgPool2d``, which exports as two
# MatMuls; :func:`onnx_compatible_pooling` swaps it in for the export only.


def pooling_matrix(size_in: int, size_out: int) -> Tensor:
    """``(size_out, size_in)`` averaging weights of adaptive pooling: bin ``i`` spans
    ``[floor(i * n / m), ceil((i + 1) * n / m))``, as in PyTorch's kernel."""
    weights = torch.zeros(size_out, size_in)
    for i in range(size_out):
        start, end = (i * size_in) // size_out, -(-((i + 1) * size_in) // size_out)
        weights[i, start:end] = 1.0 / (end - start)
    return weights


class MatrixAdaptiveAvgPool2d(nn.Module):
    """``AdaptiveAvgPool2d`` for one fixed input height and width, as two matrix products."""

    def __init__(self, size_in: tuple[int, int], size_out: tuple[int, int]) -> None:
        super().__init__()
        self.register_buffer("rows", pooling_matrix(size_in[0], size_out[0]), persistent=False)
        self.register_buffer("cols", pooling_matrix(size_in[1], size_out[1]).t().contiguous(), persistent=False)

    rows: Tensor
    cols: Tensor

    def forward(self, x: Tensor) -> Tensor:
        return torch.matmul(torch.matmul(self.rows.to(x.dtype), x), self.cols.to(x.dtype))


def _output_size(module: nn.AdaptiveAvgPool2d, size_in: tuple[int, int]) -> tuple[int, int]:
    size = module.output_size
    pair = (size, size) if isinstance(size, int) or size is None else tuple(size)
    return tuple(s if s is not None else n for s, n in zip(pair, size_in, strict=True))  # type: ignore[return-value]


@contextlib.contextmanager
def onnx_compatible_pooling(model: nn.Module, example: Tensor) -> Iterator[int]:
    """Within the block, every ``AdaptiveAvgPool2d`` of ``model`` whose output size does not divide its input (for
    ``example``'s height and width) is a :class:`MatrixAdaptiveAvgPool2d`; yields how many were swapped. The model
    is restored afterwards."""
    sizes: dict[str, tuple[int, int]] = {}

    def recorder(name: str):
        def record(_module: nn.Module, args: tuple[Tensor, ...]) -> None:  # None: the inputs stay as they are
            sizes.setdefault(name, (int(args[0].shape[-2]), int(args[0].shape[-1])))

        return record

    hooks = [
        module.register_forward_pre_hook(recorder(name))
        for name, module in model.named_modules()
        if isinstance(module, nn.AdaptiveAvgPool2d)
    ]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for name, size_in in sizes.items():
        if not name:
            continue  # the model itself is the pooling: nothing to swap it into
        module = model.get_submodule(name)
        size_out = _output_size(module, size_in)  # type: ignore[arg-type]
        if all(n % m == 0 for n, m in zip(size_in, size_out, strict=True)):
            continue  # exported natively (global pooling, or an exact multiple)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        replacement = MatrixAdaptiveAvgPool2d(size_in, size_out).to(example.device)
        setattr(parent, child, replacement)
        swapped.append((parent, child, module))
    try:
        yield len(swapped)
    finally:
        for parent, child, module in swapped:
            setattr(parent, child, module)
