"""Using a trained network: ``load_model`` from a checkpoint, its saved preprocessing, and ``predict`` on files.

>>> model, classes = resnet.load_model("runs/resnet20-cifar10/best.pt")       # doctest: +SKIP
>>> resnet.predict("runs/resnet20-cifar10/best.pt", ["cat.jpg"], top_k=3)     # doctest: +SKIP

Prediction runs on the inference fast path (``prepare_for_inference``, re-exported here from
``resnet.eval.fast``): BN folded, bf16 where the hardware has it, ONNX Runtime for fp32 on the CPU and channels-last
eager PyTorch elsewhere (``backend="auto"``); ``fast=False`` runs the plain model.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF

from resnet.data.sources.folder import IMAGE_EXTENSIONS
from resnet.errors import CheckpointError, DataError, DataNotFoundError
from resnet.eval.fast import InferenceModel, describe, inference_options, prepare_for_inference

__all__ = [
    "LoadedModel",
    "Predictor",
    "Preprocess",
    "UnreadableImageError",
    "describe",
    "expand_inputs",
    "load_model",
    "model_from_meta",
    "predict",
    "prepare_for_inference",
    "read_image",
]

PathLike = str | os.PathLike[str]


class UnreadableImageError(DataError):
    """An input image that cannot be read or decoded."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"cannot read image {name}: {reason}")
        self.name = name


@dataclass
class LoadedModel:
    """A trained network with what it needs to be used: ``model, classes = load_model(path)`` unpacks."""

    model: nn.Module
    class_names: list[str]
    meta: dict[str, Any]
    path: Path
    payload: dict[str, Any] = field(default_factory=dict, repr=False)

    def __iter__(self) -> Iterator[Any]:
        yield self.model
        yield self.class_names

    @property
    def preprocess(self) -> Preprocess:
        from resnet.train.meta import require_preprocessing

        return Preprocess(require_preprocessing(self.meta, self.path))

    def for_inference(self, device: str | torch.device = "cpu", **options: Any) -> InferenceModel:
        """The model on the inference fast path, ``prepare_for_inference(self.model, device, **options)``: BN
        folded, bf16 where native, eager channels-last unless ``backend`` says otherwise (``"auto"``: ONNX Runtime
        for fp32 on the CPU). ``.model`` stays the plain one (for fine-tuning, export)."""
        return prepare_for_inference(self.model, device, **options)


def load_model(path: PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """The trained network of a checkpoint (``last.pt``/``best.pt``) or of an exported safetensors file with its
    JSON sidecar, in eval mode, with its class names and metadata (``.meta``: options, preprocessing)."""
    from resnet.train.checkpoint import load_checkpoint
    from resnet.train.meta import read_meta

    path = Path(path)
    if path.suffix == ".safetensors":
        from resnet.export.sidecar import load_weights, read_sidecar

        if not path.is_file():
            raise DataNotFoundError(f"no weights file at '{path}'")
        meta, payload = read_sidecar(path), {}  # validated: JSON object, model, classes, preprocessing
        state = load_weights(path)
    else:
        payload = load_checkpoint(path)
        meta = read_meta(payload, path)
        state = payload["model"]
    model = model_from_meta(meta, state, path).to(device)
    return LoadedModel(model, list(meta["class_names"]), meta, path, payload)


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


def read_image(path: PathLike, mode: str, resize_to: int | None = None) -> Tensor:
    """An image file as uint8 (C, H, W) in ``mode`` ("RGB" or "L"), decoded as in training
    (:func:`resnet.data.decode.decode_image`: 16-bit kept, transparent pixels on white, size bounded before
    decoding, also after resizing the shorter side to ``resize_to``).

    Raises :class:`UnreadableImageError` naming the file when it cannot be read or decoded.
    """
    from resnet.data.decode import BadImageError, decode_image

    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise UnreadableImageError(name, f"cannot read the file ({error.strerror or error})") from error
    try:
        return decode_image(data, name, mode, resize_to)
    except BadImageError as error:
        raise UnreadableImageError(name, error.reason) from error


class Preprocess:
    """The checkpoint's evaluation preprocessing: colour mode, shorter side ``resize``, center ``crop``,
    ``(x - mean) / std`` (or minus the mean image), grayscale expanded to ``in_chans``."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.mode = record.get("mode", "RGB")
        self.in_chans = int(record.get("in_chans", 1 if self.mode == "L" else 3))
        self.resize = int(record["resize"])
        self.crop = [int(v) for v in record["crop"]]
        self.mean = torch.tensor(record["mean"], dtype=torch.float32).reshape(-1, 1, 1)
        self.std = torch.tensor(record["std"], dtype=torch.float32).reshape(-1, 1, 1)
        mean_image = record.get("mean_image")
        self.mean_image = None if mean_image is None else torch.as_tensor(mean_image, dtype=torch.float32)

    def load(self, path: PathLike) -> Tensor:
        return self(read_image(path, self.mode, self.resize))

    def __call__(self, image: Tensor) -> Tensor:
        """uint8 (C, H, W) -> normalised float (in_chans, crop_h, crop_w)."""
        if min(image.shape[-2:]) != self.resize:
            image = TF.resize(image, [self.resize], antialias=True)
        if list(image.shape[-2:]) != self.crop:
            image = TF.center_crop(image, self.crop)
        x = image.float() / 255
        x = (x - (self.mean_image if self.mean_image is not None else self.mean)) / self.std
        if x.shape[0] != self.in_chans:
            x = x.expand(self.in_chans, -1, -1)
        return x


def expand_inputs(inputs: Iterable[PathLike]) -> list[Path]:
    """Files as given, and the image files inside directories (recursively, sorted)."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise DataNotFoundError(f"no image files in directory '{path}'")
            files.extend(found)
        else:
            files.append(path)
    return files


class Predictor:
    """A checkpoint ready to classify files: its preprocessing and classes, and its model prepared once (fast path by
    default) for any number of ``__call__``s. ``choices`` (``describe(choices)``) says which path runs."""

    def __init__(
        self,
        source: PathLike | LoadedModel,
        device: str | torch.device = "cpu",
        *,
        fast: bool = True,
        precision: str = "auto",
        backend: str = "auto",
    ) -> None:
        self.loaded = source if isinstance(source, LoadedModel) else load_model(source)
        self.preprocess = self.loaded.preprocess
        self.model = self.loaded.for_inference(device, **inference_options(fast, precision, backend))
        self.choices = self.model.choices

    def __call__(
        self, inputs: Sequence[PathLike] | PathLike, top_k: int = 5, batch_size: int = 64
    ) -> list[dict[str, Any]]:
        """Per image ``{"path", "predictions": [{"class", "index", "probability"}, ...]}`` (best first), or
        ``{"path", "error"}`` for a file that cannot be read — the others are still predicted."""
        class_names = self.loaded.class_names
        files = expand_inputs([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)
        k = max(1, min(top_k, len(class_names)))
        results: list[dict[str, Any]] = []
        pending: list[tuple[int, Tensor]] = []

        def flush() -> None:
            if not pending:
                return
            with torch.inference_mode():
                probs = self.model(torch.stack([x for _, x in pending])).softmax(1).cpu()
            top = probs.topk(k, dim=1)
            for (slot, _), values, indices in zip(pending, top.values, top.indices, strict=True):
                results[slot]["predictions"] = [
                    {"class": class_names[i], "index": i, "probability": float(p)}
                    for p, i in zip(values.tolist(), indices.tolist(), strict=True)
                ]
            pending.clear()

        for path in files:
            results.append({"path": str(path)})
            try:
                pending.append((len(results) - 1, self.preprocess.load(path)))
            except UnreadableImageError as error:
                results[-1]["error"] = str(error)
            if len(pending) >= batch_size:
                flush()
        flush()
        return results


def predict(
    source: PathLike | LoadedModel,
    inputs: Sequence[PathLike] | PathLike,
    top_k: int = 5,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    *,
    fast: bool = True,
    precision: str = "auto",
    backend: str = "auto",
) -> list[dict[str, Any]]:
    """Per image ``{"path", "predictions": [{"class", "index", "probability"}, ...]}`` (best first), or
    ``{"path", "error"}`` for a file that cannot be read — the others are still predicted.

    Runs the fast path (``fast=False``: the plain fp32 model); for repeated calls build a :class:`Predictor` once.
    """
    predictor = Predictor(source, device, fast=fast, precision=precision, backend=backend)
    return predictor(inputs, top_k=top_k, batch_size=batch_size)
