"""Using a trained network: ``load_model`` from a checkpoint, its saved preprocessing, and ``predict`` on files.

>>> model, classes = resnet.load_model("runs/resnet20-cifar10/best.pt")       # doctest: +SKIP
>>> resnet.predict("runs/resnet20-cifar10/best.pt", ["cat.jpg"], top_k=3)     # doctest: +SKIP

Prediction runs on the inference fast path (``prepare_for_inference``): BN folded, bf16 where the hardware has it,
ONNX Runtime for fp32 on the CPU and channels-last eager PyTorch elsewhere (``backend="auto"``); ``fast=False``
runs the plain model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from resnet.lazy import lazy_package

# The choices of the inference path, declared once, here: the CLI builds its help from them without loading torch.
BACKENDS = ("auto", "eager", "compile", "onnxruntime")
PRECISIONS = ("auto", "fp32", "bf16")

if TYPE_CHECKING:  # the names, for type checkers; at run time each loads on first use (a fast CLI)
    from resnet.inference.fast import InferenceModel, describe, folded_copy, inference_options, prepare_for_inference
    from resnet.inference.images import Preprocess, UnreadableImageError, expand_inputs, read_image
    from resnet.inference.loading import LoadedModel, load_model, model_from_meta
    from resnet.inference.prediction import Predictor, predict

__getattr__, __all__ = lazy_package(__name__, __file__, also=("BACKENDS", "PRECISIONS"))
