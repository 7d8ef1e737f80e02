"""``export_checkpoint``: one call from a checkpoint to a verified file in the requested format.

Besides ONNX (:mod:`resnet.export.onnx`), the formats are: TorchScript (scripted, so every input size works,
verified after ``torch.jit.load``); safetensors weights (no pickle: safe to load from untrusted sources) with a JSON
sidecar that names the model, its options, classes and preprocessing, so ``resnet.load_model`` and ``resnet
predict`` can use them; and a plain state dict that ``torchvision.models.<name>()`` loads strictly.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from resnet.errors import ConfigError
from resnet.export import FORMATS
from resnet.export.onnx import ExportError, check_exporter, export_onnx, verify_onnx
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

        result["max_abs_diff"] = max_abs_difference(load_model(output).model, reference, inputs[:1])
        result["checked_with"] = "resnet.load_model"
    else:
        state = torchvision_state_dict(exported, meta)
        theirs = load_into_torchvision(state, meta["model"]["name"], meta["model"]["options"]["num_classes"])
        torch.save(state, output)
        result["max_abs_diff"] = max_abs_difference(theirs, reference, inputs[:1])
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


def max_abs_difference(exported: Callable[[Tensor], Tensor], model: nn.Module, inputs: list[Tensor]) -> float:
    """Max absolute difference between ``exported``'s and ``model``'s (eval mode) outputs over ``inputs``."""
    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            worst = max(worst, float((exported(x) - model.eval()(x)).abs().max()))
    return worst


def export_torchscript(model: nn.Module, path: str | Path, extra_files: dict[str, str] | None = None) -> Path:
    """Script ``model`` (eval mode) and save it, with ``extra_files`` (name -> text, read back by ``torch.jit.load(
    path, _extra_files={name: ""})``); loadable with ``torch.jit.load`` without this package."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        scripted = torch.jit.script(model.eval())
        torch.jit.save(scripted, str(path), _extra_files=dict(extra_files or {}))
    return path


def verify_torchscript(path: str | Path, model: nn.Module, inputs: list[Tensor]) -> float:
    """Max absolute difference between the reloaded TorchScript module and ``model`` over ``inputs``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(str(path), map_location="cpu").eval()
    return max_abs_difference(loaded, model, inputs)


SERVED_KEYS = ("model", "class_names", "input_size", "preprocessing")


def served_metadata(meta: dict[str, Any]) -> dict[str, str]:
    """What a server needs beside the graph, as JSON strings: the ONNX ``metadata_props`` and the TorchScript
    extra files of an export, so that the file alone says its classes, input size and preprocessing."""
    return {key: json.dumps(meta[key], default=Tensor.tolist) for key in SERVED_KEYS if key in meta}


def save_safetensors(model: nn.Module, meta: dict[str, Any], path: str | Path) -> tuple[Path, Path]:
    """Write ``path`` (weights) and ``path`` with ``.json`` (metadata); returns both paths."""
    from safetensors.torch import save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state: dict[str, Tensor] = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # safetensors' save_file creates its file with mode 0600; bytes written here get the user's umask.
    path.write_bytes(save(state, metadata={"format": "pt", "model": meta["model"]["name"]}))
    sidecar = path.with_suffix(".json")
    sidecar.write_text(json.dumps(meta, indent=1, default=Tensor.tolist) + "\n")  # the mean image as nested lists
    return path, sidecar


# Our ImageNet networks use torchvision's module names, so the keys match; what must also match is the computation:
# torchvision's ResNets are post-activation, projection shortcuts only where shapes change (option B), stride on the
# 3x3 convolution (v1.5), RGB input.
TORCHVISION_NAMES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg19")


def torchvision_state_dict(model: nn.Module, meta: dict[str, Any]) -> dict[str, Tensor]:
    """The state dict, after checking that torchvision's module of the same name computes the same function."""
    name, options = meta["model"]["name"], meta["model"]["options"]
    if name not in TORCHVISION_NAMES:
        raise ConfigError(
            f"{name} has no torchvision counterpart (torchvision has {', '.join(TORCHVISION_NAMES)}); "
            "use --format safetensors or onnx"
        )
    expected = (
        {"in_chans": 3} if name == "vgg19" else {"in_chans": 3, "shortcut": "B", "stride_on": "3x3", "preact": False}
    )
    different = {k: options.get(k) for k, v in expected.items() if options.get(k) != v}
    if different:
        shown = ", ".join(f"{k}={v!r}" for k, v in different.items())
        raise ConfigError(f"torchvision's {name} cannot represent this model ({shown}); use --format safetensors")
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def load_into_torchvision(state: dict[str, Tensor], name: str, num_classes: int) -> nn.Module:
    """Round trip: build torchvision's model and load ``state`` strictly (raises on any mismatch)."""
    import torchvision

    module = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    module.load_state_dict(state, strict=True)
    return module.eval()
