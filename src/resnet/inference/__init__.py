"""Using a trained network: ``load_model`` from a checkpoint, its saved preprocessing, and ``predict`` on files.

>>> model, classes = resnet.load_model("runs/resnet20-cifar10/best.pt")       # doctest: +SKIP
>>> resnet.predict("runs/resnet20-cifar10/best.pt", ["cat.jpg"], top_k=3)     # doctest: +SKIP

Prediction runs on the inference fast path (``prepare_for_inference``): BN folded, bf16 where the hardware has it,
ONNX Runtime for fp32 on the CPU and channels-last eager PyTorch elsewhere (``backend="auto"``); ``fast=False``
runs the plain model.
"""

from resnet.inference.fast import InferenceModel, describe, folded_copy, inference_options, prepare_for_inference
from resnet.inference.images import Preprocess, UnreadableImageError, expand_inputs, read_image
from resnet.inference.loading import LoadedModel, load_model, model_from_meta
from resnet.inference.predict import Predictor, predict

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
