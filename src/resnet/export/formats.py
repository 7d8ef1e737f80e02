"""``export_checkpoint``: one call from a checkpoint to a verified file in the requested format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet.errors import ConfigError
from resnet.export.onnx import ExportError, export_onnx, verify_onnx
from resnet.export.safetensors_io import save_safetensors
from resnet.export.torchscript import export_torchscript, verify_torchscript
from resnet.export.torchvision_layout import load_into_torchvision, max_abs_difference, torchvision_state_dict

FORMATS = ("onnx", "torchscript", "safetensors", "torchvision")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "safetensors": ".safetensors", "torchvision": ".pth"}
TOLERANCE = 1e-4


def default_output(checkpoint: str | Path, fmt: str) -> Path:
    """``runs/x/best.pt`` -> ``runs/x/best.onnx`` (``.torchscript.pt``, ``.safetensors``, ``-torchvision.pth``)."""
    checkpoint = Path(checkpoint)
    stem = checkpoint.name.split(".")[0] + ("-torchvision" if fmt == "torchvision" else "")
    return checkpoint.with_name(stem + SUFFIXES[fmt])


def verification_inputs(meta: dict[str, Any], dynamic_batch: bool, seed: int = 0) -> list[torch.Tensor]:
    """Normalised-image-like inputs at the training size; two batch sizes when the batch is dynamic."""
    generator = torch.Generator().manual_seed(seed)
    size = tuple(meta["input_size"])
    return [torch.randn(n, *size, generator=generator) for n in ((2, 3) if dynamic_batch else (2,))]


def export_model(
    model: nn.Module,
    meta: dict[str, Any],
    fmt: str,
    output: str | Path,
    *,
    dynamic_batch: bool = False,
    fuse_bn: bool = False,
    exporter: str = "legacy",
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """Export ``model`` and check the result against it; returns what was written and the max abs difference.

    The reference is always the model as trained (unfused), so the difference covers folding and export alike.
    """
    from resnet.models.fuse import count_batchnorms, fuse_conv_bn

    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fuse_bn and fmt in ("safetensors", "torchvision"):
        raise ConfigError(
            f"--fuse-bn applies to graph formats (onnx, torchscript); {fmt} stores the weights in the model's own "
            "layout, which has BN layers"
        )
    reference = model.eval().cpu()
    exported = fuse_conv_bn(reference) if fuse_bn else reference
    inputs = verification_inputs(meta, dynamic_batch)
    output = Path(output)
    result: dict[str, Any] = {"format": fmt, "path": str(output), "fused_bn": fuse_bn}
    if fuse_bn:
        result["batchnorms_left"] = count_batchnorms(exported)
    if fmt == "onnx":
        export_onnx(exported, inputs[0], output, dynamic_batch=dynamic_batch, exporter=exporter)
        result["max_abs_diff"] = verify_onnx(output, reference, inputs)
        result["checked_with"] = "onnxruntime"
    elif fmt == "torchscript":
        export_torchscript(exported, output)
        result["max_abs_diff"] = verify_torchscript(output, reference, inputs)
        result["checked_with"] = "torch.jit.load"
    elif fmt == "safetensors":
        _, sidecar = save_safetensors(exported, meta, output)
        result["sidecar"] = str(sidecar)
        from resnet.inference import load_model

        result["max_abs_diff"] = max_abs_difference(load_model(output).model, reference, inputs[0])
        result["checked_with"] = "resnet.load_model"
    else:
        state = torchvision_state_dict(exported, meta)
        theirs = load_into_torchvision(state, meta["model"]["name"], meta["model"]["options"]["num_classes"])
        output.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, output)
        result["max_abs_diff"] = max_abs_difference(theirs, reference, inputs[0])
        result["checked_with"] = "torchvision (strict load)"
    worst = result.get("max_abs_diff")
    if worst is not None and not worst <= tolerance:
        raise ExportError(
            f"the {fmt} export at {output} differs from PyTorch by {worst:.3g} (> {tolerance:g}); not usable as is"
        )
    return result


def export_checkpoint(
    checkpoint: str | Path,
    fmt: str,
    output: str | Path | None = None,
    *,
    dynamic_batch: bool = False,
    fuse_bn: bool = False,
    exporter: str = "legacy",
) -> dict[str, Any]:
    """Export the trained model of ``checkpoint`` (see :func:`export_model`); output next to it by default."""
    from resnet.inference import load_model

    loaded = load_model(checkpoint)
    output = Path(output) if output is not None else default_output(checkpoint, fmt)
    return export_model(
        loaded.model, loaded.meta, fmt, output, dynamic_batch=dynamic_batch, fuse_bn=fuse_bn, exporter=exporter
    )
