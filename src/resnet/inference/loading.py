"""A trained network from what a run (or an export) left behind: its model, classes and saved preprocessing.

Checkpoints are read through :mod:`resnet.runs` (one verified loader, one policy for old checkpoints); an
exported safetensors file is read with its JSON sidecar.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from resnet.errors import CheckpointError, DataNotFoundError
from resnet.inference.fast import InferenceModel, prepare_for_inference
from resnet.inference.images import Preprocess
from resnet.models.weights import require_finite
from resnet.runs import read_checkpoint, require_preprocessing
from resnet.runs.sidecar import load_weights, read_sidecar, validate_meta

if TYPE_CHECKING:
    from resnet.config import Config

PathLike = str | os.PathLike[str]


@dataclass
class LoadedModel:
    """A trained network with what it needs to be used: ``model, classes = load_model(path)`` unpacks."""

    model: nn.Module
    class_names: list[str]
    meta: dict[str, Any]
    path: Path
    payload: dict[str, Any] = field(default_factory=dict, repr=False)
    config: Config | None = field(default=None, repr=False)  # the run's configuration (checkpoints of a run only)

    def __iter__(self) -> Iterator[Any]:
        yield self.model
        yield self.class_names

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess(require_preprocessing(self.meta, self.path))

    def for_inference(self, device: str | torch.device = "cpu", **options: Any) -> InferenceModel:
        """The model on the inference fast path, ``prepare_for_inference(self.model, device, **options)``: BN
        folded, bf16 where native, eager channels-last unless ``backend`` says otherwise (``"auto"``: ONNX Runtime
        for fp32 on the CPU). ``.model`` stays the plain one (for fine-tuning, export)."""
        return prepare_for_inference(self.model, device, **options)


def load_model(path: PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """The trained network of a checkpoint (``last.pt``/``best.pt``) or of an exported safetensors file with its
    JSON sidecar, in eval mode, with its class names and metadata (``.meta``: options, preprocessing)."""
    path = Path(path)
    config = None
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise DataNotFoundError(f"no weights file at '{path}'")
        meta, payload = read_sidecar(path), {}  # validated: JSON object, model, classes, preprocessing
        state = load_weights(path)
    else:
        try:
            saved = read_checkpoint(path)
            meta, payload, state, config = saved.meta, saved.payload, saved.state, saved.config
        except CheckpointError:
            foreign = foreign_checkpoint(path)  # another codebase's file we can convert (akamaster's CIFAR-10)
            if foreign is None:
                raise
            meta, state, payload = foreign
    meta = validate_meta(meta, path)  # the same checks for a checkpoint, a sidecar and a converted file
    model = model_from_meta(meta, require_finite(state, path), path).to(device)
    return LoadedModel(model, list(meta["class_names"]), meta, path, payload, config)


def model_from_meta(meta: dict[str, Any], state: dict[str, Tensor], path: PathLike) -> nn.Module:
    """The network ``meta`` names (every option resolved at training time) with ``state`` loaded, in eval mode;
    the prefixes of DDP/compile wrappers are stripped from the keys."""
    from resnet.models import create_model
    from resnet.models.weights import strip_wrapper_prefixes

    model = create_model(meta["model"]["name"], **meta["model"]["options"])
    try:
        model.load_state_dict(strip_wrapper_prefixes(state))
    except RuntimeError as error:
        detail = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())  # torch: many lines
        if len(detail) > 300:
            detail = detail[:300] + " ..."
        raise CheckpointError(f"the weights in '{path}' do not fit {meta['model']['name']}: {detail}") from error
    return model.eval()


def foreign_checkpoint(path: PathLike) -> tuple[dict[str, Any], dict[str, Tensor], dict[str, Any]] | None:
    """``(meta, state in our layout, payload)`` for a checkpoint of another codebase that records no ``meta`` of
    ours but whose architecture, classes and preprocessing are known (akamaster's CIFAR-10 files); else None.

    This is how ``resnet eval`` and ``resnet predict`` use such a file: ``payload["config"]`` names its dataset,
    so that evaluation defaults to it as for one of our runs.
    """
    from resnet.models import akamaster
    from resnet.models.weights import NonFiniteWeightsError, read_weights, to_our_layout

    try:
        state, extras = read_weights(path)
    except NonFiniteWeightsError:
        raise  # whatever layout it has, that is what to say
    except Exception:  # a probe: whatever this file is, the caller reports its own, clearer error
        return None
    if not akamaster.is_akamaster(state):
        return None
    meta = akamaster_meta(state)
    payload = {**extras, "config": {"data": {"dataset": meta["dataset"]["name"]}}}
    return meta, to_our_layout(state, extras), payload


def akamaster_meta(state: dict[str, Tensor]) -> dict[str, Any]:
    """What one of our checkpoints records (model, options, classes, preprocessing) for an akamaster file."""
    from resnet.models import akamaster
    from resnet.models.registry import resolve_options

    name = akamaster.model_name(state)
    shortcut = "B" if any(".shortcut." in k for k in state) else "A"
    num_classes = int(state["linear.weight"].shape[0])
    classes = list(akamaster.CIFAR10_CLASSES) if num_classes == 10 else [f"class{i}" for i in range(num_classes)]
    return {
        "version": 1,
        "model": {"name": name, "options": resolve_options(name, num_classes, shortcut=shortcut)},
        "class_names": classes,
        "input_size": [3, 32, 32],
        "preprocessing": {
            "mode": "RGB",
            "in_chans": 3,
            "resize": 32,
            "crop": [32, 32],
            "mean": list(akamaster.MEAN),
            "std": list(akamaster.STD),
            "mean_image": None,
        },
        "dataset": {"name": "cifar10" if num_classes == 10 else "", "location": "", "pipeline": "tensor"},
        "source": akamaster.SOURCE,
    }
