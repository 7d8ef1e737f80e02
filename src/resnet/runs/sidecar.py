"""Reading an exported safetensors file and its JSON sidecar, validated as strictly as a checkpoint.

A sidecar is a hand-editable text file, so anything may be in it: invalid JSON, a list, a missing ``"model"``,
class names that do not match the model's outputs, a zero standard deviation (every pixel divided by zero, printed
as ``nan%``). Each is one :class:`~resnet.errors.CheckpointError` naming the file and the field, before a model
is built or an image is read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from resnet.config.schema import RANGES
from resnet.errors import CheckpointError
from resnet.runs.checkpoint import first_line

REWRITE = "it was not written by resnet train or was edited: use the run's own checkpoint, or train again"
REEXPORT = "export it again with `resnet export --format safetensors`, or repair the file"
JSON_TYPES = {list: "a JSON list", str: "a JSON string", int: "a number", float: "a number", bool: "true/false"}


def _fail(where: Path, problem: str) -> CheckpointError:
    if where.suffix == ".json":
        return CheckpointError(f"the sidecar {where} {problem}; {REEXPORT}")
    return CheckpointError(f"the checkpoint {where} {problem} in its metadata; {REWRITE}")


def _numbers(value: Any, field: str, where: Path) -> list[float]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    ):
        raise _fail(where, f"has preprocessing.{field} = {json.dumps(value)[:60]}, not a list of finite numbers")
    return [float(v) for v in value]


def _positive_int(value: Any, field: str, where: Path, most: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _fail(where, f"has {field} = {json.dumps(value)[:60]}, not a positive whole number")
    if most is not None and value > most:  # sizes are bounded before anything is allocated from them
        raise _fail(where, f"has {field} = {value:,}, above the limit of {most:,} pixels")
    return value


MAX_SIDE = int(RANGES["data.eval_resize"].high or 8192)  # the largest image side a saved preprocessing may ask for


def validate_meta(meta: Any, where: Path) -> dict[str, Any]:
    """``meta`` if it has what using a model needs (model name and options, class names matching the outputs,
    sane preprocessing); otherwise one error naming the field. The one validator of every loader (a checkpoint's
    ``meta``, a safetensors sidecar, a converted foreign file): ``where`` is the file the error names."""
    if not isinstance(meta, dict):
        raise _fail(where, f"holds {JSON_TYPES.get(type(meta), 'null')}, not a JSON object with the model metadata")
    model = meta.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise _fail(where, 'has no "model" entry naming the network ({"name": ..., "options": {...}})')
    options = model.get("options", {})
    if not isinstance(options, dict):
        raise _fail(where, "has model.options that is not a JSON object")
    model.setdefault("options", options)
    names = meta.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise _fail(where, "has no class_names list (one name per model output)")
    outputs = options.get("num_classes")
    if outputs is not None and outputs != len(names):
        raise _fail(where, f"names {len(names)} classes but the model has {outputs} outputs (model.options)")
    channels = options.get("in_chans")
    if channels is not None:
        _positive_int(channels, "model.options.in_chans", where)
    if meta.get("input_size") is not None:
        size = meta["input_size"]
        if not isinstance(size, list) or len(size) != 3:
            raise _fail(where, f"has input_size = {json.dumps(size)[:60]}, not [channels, height, width]")
        for v in size:
            _positive_int(v, "input_size", where, MAX_SIDE)
    pre = meta.get("preprocessing") or {}
    if not isinstance(pre, dict):
        raise _fail(where, "has preprocessing that is not a JSON object")
    if pre:
        mode_channels = _validate_preprocessing(pre, where)
        if channels is not None and channels != mode_channels:
            raise _fail(where, f'has preprocessing.mode = "{pre.get("mode", "RGB")}" ({mode_channels} channels) for a '
                        f"model of {channels} input channels")  # fmt: skip
    return meta


def _validate_preprocessing(pre: dict[str, Any], where: Path) -> int:
    """Check the saved preprocessing; the channels of its colour mode."""
    if pre.get("mode", "RGB") not in ("RGB", "L"):
        raise _fail(where, f'has preprocessing.mode = {json.dumps(pre.get("mode"))[:40]}, not "RGB" or "L"')
    mean = _numbers(pre.get("mean"), "mean", where)
    std = _numbers(pre.get("std"), "std", where)
    channels = 1 if pre.get("mode", "RGB") == "L" else 3
    for field, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, channels):
            raise _fail(where, f"has {len(values)} preprocessing.{field} values for {channels}-channel images")
    if any(v <= 0 for v in std):
        raise _fail(where, f"has preprocessing.std = {std}: a standard deviation must be positive (pixels are divided "
                    "by it)")  # fmt: skip
    _positive_int(pre.get("resize"), "preprocessing.resize", where, MAX_SIDE)
    crop = pre.get("crop")
    if not isinstance(crop, list) or len(crop) != 2:
        raise _fail(where, f"has preprocessing.crop = {json.dumps(crop)[:40]}, not [height, width]")
    for v in crop:
        _positive_int(v, "preprocessing.crop", where, MAX_SIDE)
    return channels


def read_sidecar(weights: Path) -> dict[str, Any]:
    """The validated metadata in ``weights``' ``NAME.json`` sidecar (the mean image as a tensor)."""
    sidecar = weights.with_suffix(".json")
    if not sidecar.is_file():
        raise CheckpointError(
            f"'{weights}' holds weights only and its sidecar {sidecar.name} (model name, options, classes) is "
            "missing; export again with `resnet export --format safetensors`, or use create_model(NAME, weights=PATH)"
        )
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise _fail(sidecar, f"is not text (byte {error.start} is not UTF-8)") from error
    except RecursionError:
        raise _fail(sidecar, "is nested too deeply to be model metadata") from None
    except json.JSONDecodeError as error:
        raise _fail(sidecar, f"is not valid JSON ({error.msg}: line {error.lineno} column {error.colno})") from error
    except OSError as error:
        raise CheckpointError(f"cannot read the sidecar {sidecar}: {error.strerror or error}") from error
    meta = validate_meta(meta, sidecar)
    pre = meta.get("preprocessing") or {}
    if pre.get("mean_image") is not None:
        try:
            pre["mean_image"] = torch.tensor(pre["mean_image"], dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as error:
            raise _fail(sidecar, f"has a preprocessing.mean_image that is not an array of numbers ({error})") from error
    return meta


def load_weights(path: Path) -> dict[str, Tensor]:
    """The tensors of a safetensors file; a damaged or foreign file is one error, never a traceback."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"'{path}' is not a readable safetensors file ({first_line(error)}); it may be truncated or not a "
            "safetensors export: export it again with `resnet export --format safetensors`"
        ) from error
