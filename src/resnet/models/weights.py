"""Loading foreign weights into our networks: torchvision ``.pth`` state dicts, our checkpoints, safetensors, and
akamaster/pytorch_resnet_cifar10 checkpoints (recognised by their keys and converted, see ``akamaster.py``).

Strict by design: every key must match, except a classifier of another size (fine-tuning on a new label set),
which is left freshly initialised and reported. Anything else missing or unexpected is an error that lists
the keys — never a silent ``strict=False``.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from resnet.errors import CheckpointError

CLASSIFIER_PREFIXES = ("fc.", "classifier.6.")  # ResNet / plain nets, VGG-19 (its last linear layer)
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DDP, torch.compile


class WeightsConverted(UserWarning):
    """Weights of another codebase's layout were converted to ours (the message says how, in one line)."""


@dataclass
class LoadReport:
    """What ``load_weights`` did: keys loaded, and the notes worth telling the user (one line each)."""

    loaded: int = 0
    notes: list[str] = field(default_factory=list)


def strip_wrapper_prefixes(state: dict[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        while key.startswith(WRAPPER_PREFIXES):  # nested wrappers: ``module._orig_mod.conv1.weight``
            key = key.partition(".")[2]  # each prefix is one name and its dot
        out[key] = value
    return out


def read_weights(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The state dict in ``path`` (wrapper prefixes stripped) and the rest of its payload (``best_prec1``...)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no weights file at '{path}'")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = strip_wrapper_prefixes(load_file(str(path)))
        except Exception as error:  # safetensors raises its own error types
            raise CheckpointError(f"'{path}' is not a readable safetensors file ({error})") from error
        return require_finite(state, path), {}
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"'{path}' cannot be read as a PyTorch weights file ({error})") from error
    extras: dict[str, Any] = {}
    if isinstance(payload, dict):
        for key in ("model", "state_dict", "model_state_dict"):
            if isinstance(payload.get(key), dict):
                extras = {k: v for k, v in payload.items() if k != key}
                payload = payload[key]
                break
    if not isinstance(payload, dict) or not all(isinstance(v, Tensor) for v in payload.values()):
        raise CheckpointError(f"'{path}' holds no state dict (a mapping of parameter names to tensors)")
    return require_finite(strip_wrapper_prefixes(payload), path), extras


class NonFiniteWeightsError(CheckpointError):
    """A weights file holding NaN or inf."""


def require_finite(state: dict[str, Tensor], path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """``state`` unless a weight or buffer holds NaN or inf: such a model predicts ``nan%`` and evaluates to a loss
    of NaN, so every loader refuses it when it reads the file, naming the first such tensor."""
    for key, value in state.items():
        if isinstance(value, Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise NonFiniteWeightsError(
                f"'{path}' holds NaN or infinite weights ({key}); it was saved from a diverged run or damaged: use "
                "an earlier checkpoint or the original file"
            )
    return state


def to_our_layout(state: dict[str, Tensor], extras: dict[str, Any] | None = None) -> dict[str, Tensor]:
    """``state`` converted when it is another codebase's layout that we know (akamaster/pytorch_resnet_cifar10),
    with a one-line :class:`WeightsConverted` warning saying what changed; otherwise ``state`` itself."""
    from resnet.models import akamaster

    if not akamaster.is_akamaster(state):
        return state
    converted, note = akamaster.convert(state, extras)
    warnings.warn(note, WeightsConverted, stacklevel=3)
    return converted


def _is_classifier(key: str) -> bool:
    return key.startswith(CLASSIFIER_PREFIXES)


def _adapt_first_conv(state: dict[str, Tensor], own: dict[str, Tensor], notes: list[str]) -> None:
    """RGB weights into a grayscale model: sum the stem filters over the colour channels (as timm does)."""
    key = "conv1.weight"
    if key in state and key in own and state[key].shape != own[key].shape:
        theirs, ours = state[key], own[key]
        if theirs.shape[0] == ours.shape[0] and theirs.shape[2:] == ours.shape[2:] and ours.shape[1] == 1:
            state[key] = theirs.sum(dim=1, keepdim=True)
            notes.append(f"stem convolution: {theirs.shape[1]}-channel weights summed for 1-channel input")


def _fill_batch_counts(state: dict[str, Tensor], own: dict[str, Tensor]) -> None:
    """Give each BatchNorm whose statistics ``state`` holds but whose ``num_batches_tracked`` it lacks the model's
    own count, as ``BatchNorm._load_from_state_dict`` does: files saved before PyTorch 0.4.1 (akamaster's published
    checkpoints among them) have no such buffer, and it only matters for ``momentum=None``."""
    for key, value in own.items():
        stats = key.removesuffix("num_batches_tracked") + "running_mean"
        if key.endswith(".num_batches_tracked") and key not in state and stats in state:
            state[key] = value


def load_weights(model: nn.Module, source: str | os.PathLike[str] | dict[str, Tensor]) -> LoadReport:
    """Load ``source`` into ``model``: strictly, replacing a classifier of another size (or dropping the
    classifier for a feature extractor). Raises :class:`CheckpointError` listing missing/unexpected keys."""
    where = "the given state dict" if isinstance(source, dict) else f"'{source}'"
    state, extras = (strip_wrapper_prefixes(dict(source)), {}) if isinstance(source, dict) else read_weights(source)
    state = to_our_layout(state, extras)
    own = model.state_dict()
    report = LoadReport()
    _adapt_first_conv(state, own, report.notes)
    _fill_batch_counts(state, own)
    has_classifier = any(_is_classifier(k) for k in own)
    replaced: set[str] = set()
    theirs_classifier = {k: v for k, v in state.items() if _is_classifier(k)}
    if theirs_classifier and not has_classifier:
        state = {k: v for k, v in state.items() if not _is_classifier(k)}
        report.notes.append("classifier weights ignored (feature extractor)")
    elif theirs_classifier:
        mismatched = [k for k, v in theirs_classifier.items() if k in own and own[k].shape != v.shape]
        if mismatched:
            state = {k: v for k, v in state.items() if not _is_classifier(k)}
            replaced = {k for k in own if _is_classifier(k)}
            weight = next(k for k in own if _is_classifier(k) and k.endswith("weight"))
            old = theirs_classifier.get(weight)
            report.notes.append(
                f"classifier replaced: {old.shape[0] if old is not None else '?'} -> {own[weight].shape[0]} classes "
                f"({weight.rsplit('.', 1)[0]} freshly initialised)"
            )
    missing = sorted(k for k in own if k not in state and k not in replaced)
    unexpected = sorted(k for k in state if k not in own)
    wrong_shape = sorted(k for k in state if k in own and state[k].shape != own[k].shape)
    if missing or unexpected or wrong_shape:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if keys:
                modules = list(dict.fromkeys(k.rsplit(".", 1)[0] + ".*" for k in keys))  # one entry per module
                shown = ", ".join(modules[:8]) + (f", ... ({len(modules)} modules)" if len(modules) > 8 else "")
                parts.append(f"{label} ({len(keys)} keys): {shown}")
        name = getattr(model, "arch", type(model).__name__)
        raise CheckpointError(
            f"the weights in {where} do not fit {name} ({'; '.join(parts)}); check the model name and its options "
            "(shortcut, stride_on, preact, in_chans)"
        )
    model.load_state_dict(state, strict=not replaced)
    report.loaded = len(state)
    return report
