"""Using a trained network: ``load_model`` from a checkpoint, its saved preprocessing, and ``predict`` on files.

>>> model, classes = resnet.load_model("runs/resnet20-cifar10/best.pt")       # doctest: +SKIP
>>> resnet.predict("runs/resnet20-cifar10/best.pt", ["cat.jpg"], top_k=3)     # doctest: +SKIP

Prediction runs on the inference fast path (``prepare_for_inference``): BN folded, bf16 where the hardware has it,
ONNX Runtime for fp32 on the CPU and channels-last eager PyTorch elsewhere (``backend="auto"``); ``fast=False``
runs the plain model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from resnet.lazy import lazy_exports

if TYPE_CHECKING:  # the names, for type checkers; at run time each loads on first use (a fast CLI)
    from resnet.inference.fast import InferenceModel, describe, folded_copy, inference_options, prepare_for_inference
    from resnet.inference.images import Preprocess, UnreadableImageError, expand_inputs, read_image
    from resnet.inference.loading import LoadedModel, load_model, model_from_meta
    from resnet.inference.prediction import Predictor, predict

_EXPORTS: dict[str, str] = {
    "InferenceModel": "resnet.inference.fast",
    "LoadedModel": "resnet.inference.loading",
    "Predictor": "resnet.inference.prediction",
    "Preprocess": "resnet.inference.images",
    "UnreadableImageError": "resnet.inference.images",
    "describe": "resnet.inference.fast",
    "expand_inputs": "resnet.inference.images",
    "folded_copy": "resnet.inference.fast",
    "inference_options": "resnet.inference.fast",
    "load_model": "resnet.inference.loading",
    "model_from_meta": "resnet.inference.loading",
    "predict": "resnet.inference.prediction",
    "prepare_for_inference": "resnet.inference.fast",
    "read_image": "resnet.inference.images",
}

__all__ = [
    "InferenceModel",
    "LoadedModel",
    "Predictor",
    "Preprocess",
    "UnreadableImageError",
    "describe",
    "expand_inputs",
    "folded_copy",
    "inference_options",
    "load_model",
    "model_from_meta",
    "predict",
    "prepare_for_inference",
    "read_image",
]


_load = lazy_exports(__name__, _EXPORTS)


def __getattr__(name: str) -> Any:
    return _load(name, globals())
