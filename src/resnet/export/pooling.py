"""Adaptive average pooling that ONNX can express at any input size.

The legacy ONNX exporter supports ``adaptive_avg_pool2d`` only when the output size divides the input size: VGG-19's
7x7 pooling after five max-pools of a 32x32 image (a 1x1 map) is refused with a ~100-line traceback. For a graph of
fixed height and width the pooling is a linear map, ``P_h @ x @ P_w^T`` with the averaging bins of
``AdaptiveAvgPool2d``, which exports as two MatMuls; :func:`onnx_compatible_pooling` swaps it in for the export only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn


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
