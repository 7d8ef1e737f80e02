"""Public entry points: ``create_model``, ``list_models``, ``model_info``."""

from __future__ import annotations

import difflib
import functools
import os
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from resnet.errors import ConfigError
from resnet.models.net import ResNet, ResNetFeatures
from resnet.models.shortcuts import SHORTCUT_OPTIONS
from resnet.models.specs import ARCHITECTURES, ArchSpec, lookup_spec
from resnet.models.vgg import VGG

RESNET_OPTIONS = ("shortcut", "stride_on", "zero_init_residual", "preact", "in_chans", "drop_rate", "drop_path_rate")
VGG_OPTIONS = ("in_chans", "dropout")
STRIDE_PLACEMENTS = ("3x3", "1x1")


def list_models(family: str | None = None) -> list[str]:
    """Registered names (the paper's networks), optionally of one family: "cifar", "imagenet" or "vgg".

    Any other CIFAR depth is accepted by ``create_model`` too: 6n+2 with basic blocks (``resnet8``, ``plain14``),
    9n+2 with bottlenecks (``resnet29``), or either block named explicitly (``resnet56-bottleneck``,
    ``resnet164-basic``); see :func:`resnet.models.specs.default_cifar_block`.
    """
    if family is not None and family not in ("cifar", "imagenet", "vgg"):
        raise ConfigError(f"unknown family {family!r}; expected 'cifar', 'imagenet' or 'vgg'")
    return [name for name, spec in ARCHITECTURES.items() if family is None or spec.family == family]


def get_spec(name: str) -> ArchSpec:
    """The architecture behind a name; an unknown name raises an error listing the closest ones."""
    spec = lookup_spec(name.strip().lower()) if isinstance(name, str) else None
    if spec is None:
        close = difflib.get_close_matches(str(name).lower(), list(ARCHITECTURES), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown model {name!r}{hint} (`resnet models` lists them all; CIFAR depths 6n+2 (basic blocks) and 9n+2 "
            "(bottlenecks, or NAME-bottleneck) work too)"
        )
    return spec


def min_input_size(name: str) -> int:
    """The smallest image side a network takes: 32 for vgg19 (five 2x2 max-pools), 1 for the ResNets (adaptive
    pooling after strided stages that pad)."""
    return 32 if get_spec(name).family == "vgg" else 1


def _validated_options(spec: ArchSpec, num_classes: int | None, options: dict[str, Any]) -> dict[str, Any]:
    allowed = VGG_OPTIONS if spec.family == "vgg" else RESNET_OPTIONS
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"{spec.name} has no option(s) {', '.join(unknown)}; valid options: {', '.join(allowed)}")
    if num_classes is None:
        num_classes = spec.num_classes
    in_chans = options.get("in_chans", 3)
    for key, value in (("num_classes", num_classes), ("in_chans", in_chans)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    resolved: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_chans}
    if spec.family == "vgg":
        dropout = options.get("dropout", 0.5)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise ConfigError(f"dropout must be a number in [0, 1), got {dropout!r}")
        dropout = float(dropout)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        resolved["dropout"] = dropout
        return resolved

    shortcut = options.get("shortcut", spec.default_shortcut)
    if isinstance(shortcut, str):
        shortcut = shortcut.upper()
    if spec.residual and shortcut not in SHORTCUT_OPTIONS:
        raise ConfigError(f"shortcut must be one of {', '.join(SHORTCUT_OPTIONS)}, got {shortcut!r}")
    if not spec.residual and shortcut is not None:
        twin = spec.name.replace("plain", "resnet")
        raise ConfigError(f"{spec.name} is a plain network and has no shortcuts; use {twin} with shortcut={shortcut!r}")
    stride_on = options.get("stride_on", spec.default_stride_on)
    if stride_on not in STRIDE_PLACEMENTS:
        raise ConfigError(f"stride_on must be '3x3' (torchvision, v1.5) or '1x1' (the paper, v1), got {stride_on!r}")
    if stride_on != "3x3" and spec.block != "bottleneck":
        raise ConfigError(
            f"stride_on={stride_on!r} applies to bottleneck blocks only (resnet50 and deeper, resnet164, resnet1001); "
            f"{spec.name} has basic blocks, whose stride is always on the first 3x3 convolution: drop the option"
        )
    zero_init_residual = options.get("zero_init_residual", False)
    preact = options.get("preact", False)
    for key, value in (("zero_init_residual", zero_init_residual), ("preact", preact)):
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be True or False, got {value!r}")
    if zero_init_residual and not spec.residual:
        raise ConfigError(f"zero_init_residual would zero every block of the plain network {spec.name}")
    resolved.update(shortcut=shortcut, stride_on=stride_on, zero_init_residual=zero_init_residual, preact=preact)
    for key in ("drop_rate", "drop_path_rate"):
        value = options.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
            raise ConfigError(f"{key} must be a probability in [0, 1), got {value!r}")
        resolved[key] = float(value)
    if resolved["drop_path_rate"] and not spec.residual:
        raise ConfigError(
            f"drop_path_rate drops residual branches, and the plain network {spec.name} has none; "
            f"use drop_rate (dropout before the classifier), or {spec.name.replace('plain', 'resnet')}"
        )
    return resolved


MAX_PARAMETERS = 2**30  # 4 GiB of fp32 weights: 60 times ResNet-152; RESNET_MAX_PARAMETERS raises it


def estimated_parameters(spec: ArchSpec, num_classes: int, in_chans: int) -> int:
    """The weights a network would have (convolutions and classifier, within a few percent), from its spec alone:
    a name like ``resnet600002`` or a meta with ``in_chans: 2**40`` is refused before anything is allocated."""
    if spec.family == "vgg":
        return 139_570_000 + 9 * 64 * in_chans + 4097 * num_classes
    total, previous = in_chans * spec.stem.kernel**2 * spec.stem_width, spec.stem_width
    for blocks, width in zip(spec.depths, spec.widths, strict=True):
        out = width * spec.expansion
        if spec.block == "basic":
            first, each = 9 * width * (previous + width), 18 * width * width
        else:
            first = previous * width + 9 * width * width + width * out + previous * out
            each = 2 * width * out + 9 * width * width
        total, previous = total + first + (blocks - 1) * each, out
    return total + (previous + 1) * num_classes


def check_size(spec: ArchSpec, num_classes: int, in_chans: int) -> None:
    """Refuse a network too large to build, in one line (the limit: ``RESNET_MAX_PARAMETERS``)."""
    limit = int(os.environ.get("RESNET_MAX_PARAMETERS", MAX_PARAMETERS))
    count = estimated_parameters(spec, num_classes, in_chans)
    if count > limit:
        raise ConfigError(
            f"{spec.name} with {in_chans:,} input channels and {num_classes:,} classes would have about {count:,} "
            f"parameters ({count * 4 / 2**30:,.1f} GiB), above the limit of {limit:,}; check the model name and "
            "options (set RESNET_MAX_PARAMETERS to build larger networks)"
        )


def resolve_options(name: str, num_classes: int | None = None, **options: Any) -> dict[str, Any]:
    """Every option of ``name`` with its default filled in (``num_classes`` and ``in_chans`` included).

    Checkpoints store this, so a model is rebuilt exactly even if a default changes later.
    """
    return _validated_options(get_spec(name), num_classes, options)


def create_model(
    name: str,
    num_classes: int | None = None,
    *,
    features_only: bool = False,
    weights: str | os.PathLike[str] | None = None,
    **options: Any,
) -> nn.Module:
    """Build a network of the paper by name.

    Options: ``shortcut`` ("A" zero-pad, "B" projection on shape change, "C" projection everywhere; default A for
    the CIFAR basic nets, B for ImageNet and the CIFAR bottleneck nets), ``stride_on`` ("3x3" torchvision v1.5,
    default for ImageNet; "1x1" the paper's v1, default for the CIFAR bottleneck nets as in the authors' code),
    ``zero_init_residual``, ``preact`` (pre-activation blocks), ``in_chans``, ``drop_rate`` (dropout before the
    classifier) and ``drop_path_rate`` (stochastic depth, growing linearly to this rate in the last block).
    ``num_classes`` defaults to 10 for CIFAR nets and 1000 for ImageNet nets. ``features_only=True`` returns a
    backbone whose forward gives the stage outputs, described by its ``feature_info``.

    ``weights=PATH`` loads a torchvision ``.pth`` state dict, one of our checkpoints, a safetensors file or an
    akamaster/pytorch_resnet_cifar10 checkpoint, converted (see :func:`resnet.models.weights.load_weights`):
    strictly, except that a classifier of another size is replaced (fine-tuning).
    """
    spec = get_spec(name)
    resolved = _validated_options(spec, num_classes, options)
    check_size(spec, resolved["num_classes"], resolved["in_chans"])
    if spec.family == "vgg":
        if features_only:
            raise ConfigError("features_only is available for ResNet and plain networks, not vgg19")
        model: nn.Module = VGG(**resolved)
    elif features_only:
        resolved.pop("num_classes")
        resolved.pop("drop_rate")  # no classifier
        model = ResNetFeatures(spec, **resolved)
    else:
        model = ResNet(spec, **resolved)
    if weights is not None:
        from resnet.models.weights import load_weights

        load_weights(model, weights)
    return model


@functools.lru_cache(maxsize=256)
def _count(name: str, frozen_options: tuple[tuple[str, Any], ...], input_size: tuple[int, ...]) -> tuple[int, int]:
    # Built on the meta device: shapes only, so even ResNet-1202 and VGG-19 are counted in milliseconds.
    with torch.device("meta"):
        model = create_model(name, **dict(frozen_options))
        params = sum(p.numel() for p in model.parameters())
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model.eval()(torch.empty(1, *input_size))
    return params, counter.get_total_flops() // 2


def model_info(name: str, input_size: tuple[int, int, int] | None = None, **options: Any) -> dict[str, Any]:
    """Architecture facts, with ``params`` and ``macs`` (multiply-adds of one forward pass) counted from the model.

    ``input_size`` is (C, H, W); by default the family's (3x32x32 CIFAR, 3x224x224 ImageNet/VGG).
    """
    spec = get_spec(name)
    resolved = _validated_options(spec, options.pop("num_classes", None), options)
    size: tuple[int, ...] = (resolved["in_chans"], *spec.input_size[1:]) if input_size is None else input_size
    size = tuple(int(v) for v in size)
    if len(size) != 3 or size[0] != resolved["in_chans"]:
        raise ConfigError(f"input_size must be (C, H, W) with C = in_chans = {resolved['in_chans']}, got {size}")
    input_size = (size[0], size[1], size[2])
    params, macs = _count(spec.name, tuple(sorted(resolved.items())), input_size)
    info: dict[str, Any] = {
        "name": spec.name,
        "family": "imagenet" if spec.family == "vgg" else spec.family,
        "block": "vgg" if spec.family == "vgg" else spec.block,
        "depth": spec.depth,
        "residual": spec.residual,
        "stage_depths": spec.depths,
        "params": params,
        "macs": macs,
        "input_size": input_size,
    }
    info.update(resolved)
    return info
