"""``export_checkpoint``: one call from a checkpoint to a verified file in the requested format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet.errors import ConfigError
from resnet.export import FORMATS
from resnet.export.onnx import ExportError, check_exporter, export_onnx, verify_onnx
from resnet.export.safetensors_io import save_safetensors, served_metadata
from resnet.export.torchscript import export_torchscript, verify_torchscript
from resnet.export.torchvision_layout import load_into_torchvision, max_abs_difference, torchvision_state_dict
from resnet.export.writing import check_targets, export_targets, staged

SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "safetensors": ".safetensors", "torchvision": ".pth"}
TOLERANCE = 1e-4  # of the outputs' magnitude (at least 1): see export_model


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


def output_scale(model: nn.Module, inputs: list[torch.Tensor]) -> float:
    """The largest logit magnitude of ``model`` over ``inputs``: float32 rounding, and so any export's honest
    difference, grows with it (a deep net whose BN statistics are still near their initial values gives logits
    of 1e7 and more, where a difference of 1 is a relative error of 1e-7)."""
    with torch.no_grad():
        return max(float(model.eval()(x).abs().max()) for x in inputs)


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
    force: bool = False,
    source: str | Path | None = None,
) -> dict[str, Any]:
    """Export ``model`` and check the result against it; returns what was written, the max abs difference and
    the difference relative to the outputs' magnitude (``max_rel_diff``).

    The reference is always the model as trained (unfused), so the difference covers folding and export alike.
    The export is accepted when the max abs difference is at most ``tolerance * max(1, largest |logit|)``. The
    files are written and verified under temporary names, then renamed into place, so a refused export never sits
    under ``output``; an existing target is replaced only with ``force``, the checkpoint ``source`` never
    (:mod:`resnet.export.writing`).
    """
    from resnet.models.fuse import count_batchnorms, fuse_conv_bn

    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fuse_bn and fmt in ("safetensors", "torchvision"):
        raise ConfigError(
            f"--fuse-bn applies to graph formats (onnx, torchscript); {fmt} stores the weights in the model's own "
            "layout, which has BN layers"
        )
    if fmt == "onnx":
        check_exporter(exporter)
    output = Path(output)
    targets = export_targets(fmt, output)
    outputs = check_targets(targets, source=None if source is None else Path(source), force=force)
    reference = model.eval().cpu()
    exported = fuse_conv_bn(reference) if fuse_bn else reference
    inputs = verification_inputs(meta, dynamic_batch)
    result: dict[str, Any] = {"format": fmt, "path": str(output), "fused_bn": fuse_bn}
    if fuse_bn:
        result["batchnorms_left"] = count_batchnorms(exported)
    if fmt == "safetensors":
        result["sidecar"] = str(targets[1])
    with staged(outputs) as tmp:
        _write_and_verify(fmt, exported, reference, meta, inputs, tmp, result, dynamic_batch, exporter)
        worst, scale = result["max_abs_diff"], output_scale(reference, inputs)
        result["output_scale"] = scale
        result["max_rel_diff"] = worst / scale if scale > 0 else worst
        allowed = tolerance * max(1.0, scale)
        if not worst <= allowed:
            raise ExportError(
                f"the {fmt} export differs from PyTorch by {worst:.3g} (relative {result['max_rel_diff']:.3g}; "
                f"allowed {allowed:.3g}, {tolerance:g} of max(1, largest |logit| {scale:.3g})); not usable as is, "
                f"so {output} was not written"
            )
    return result


def _write_and_verify(
    fmt: str,
    exported: nn.Module,
    reference: nn.Module,
    meta: dict[str, Any],
    inputs: list[torch.Tensor],
    output: Path,
    result: dict[str, Any],
    dynamic_batch: bool,
    exporter: str,
) -> None:
    """Write ``exported`` as ``fmt`` to ``output`` and record in ``result`` how far it is from ``reference``."""
    if fmt == "onnx":
        served = served_metadata(meta)
        export_onnx(exported, inputs[0], output, dynamic_batch=dynamic_batch, exporter=exporter, metadata=served)
        result["max_abs_diff"] = verify_onnx(output, reference, inputs)
        result["checked_with"] = "onnxruntime"
    elif fmt == "torchscript":
        export_torchscript(exported, output, served_metadata(meta))
        result["max_abs_diff"] = verify_torchscript(output, reference, inputs)
        result["checked_with"] = "torch.jit.load"
    elif fmt == "safetensors":
        save_safetensors(exported, meta, output)
        from resnet.inference import load_model

        result["max_abs_diff"] = max_abs_difference(load_model(output).model, reference, inputs[0])
        result["checked_with"] = "resnet.load_model"
    else:
        state = torchvision_state_dict(exported, meta)
        theirs = load_into_torchvision(state, meta["model"]["name"], meta["model"]["options"]["num_classes"])
        torch.save(state, output)
        result["max_abs_diff"] = max_abs_difference(theirs, reference, inputs[0])
        result["checked_with"] = "torchvision (strict load)"


def export_checkpoint(
    checkpoint: str | Path,
    fmt: str,
    output: str | Path | None = None,
    *,
    dynamic_batch: bool = False,
    fuse_bn: bool = False,
    exporter: str = "legacy",
    force: bool = False,
) -> dict[str, Any]:
    """Export the trained model of ``checkpoint`` (see :func:`export_model`); output next to it by default. An
    existing output is replaced only with ``force``; the checkpoint itself never."""
    from resnet.inference import load_model

    if fmt == "onnx":
        check_exporter(exporter)  # before loading: a missing onnxscript is the first thing to say
    output = Path(output) if output is not None else default_output(checkpoint, fmt)
    check_targets(export_targets(fmt, output), source=Path(checkpoint), force=force)  # before the slow load
    loaded = load_model(checkpoint)
    return export_model(
        loaded.model,
        loaded.meta,
        fmt,
        output,
        dynamic_batch=dynamic_batch,
        fuse_bn=fuse_bn,
        exporter=exporter,
        force=force,
        source=checkpoint,
    )
