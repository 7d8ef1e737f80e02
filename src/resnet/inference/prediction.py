"""Classifying image files with a trained network: ``Predictor`` prepares it once, ``predict`` is one call."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from resnet.inference.fast import inference_options
from resnet.inference.images import UnreadableImageError, expand_inputs
from resnet.inference.loading import LoadedModel, load_model
from resnet.runtime import resolve_device

PathLike = str | os.PathLike[str]


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
        retune: bool = False,
    ) -> None:
        device = resolve_device(str(device))  # one rule for every command: unknown or absent devices are one line
        self.loaded = source if isinstance(source, LoadedModel) else load_model(source)
        self.preprocess = self.loaded.preprocess
        options = inference_options(fast, precision, backend, retune)
        if fast and self.loaded.meta.get("input_size"):  # a decision cached for this machine and model, if any
            options["batch_shape"] = (64, *map(int, self.loaded.meta["input_size"]))
        self.model = self.loaded.for_inference(device, **options)
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
    retune: bool = False,
) -> list[dict[str, Any]]:
    """Per image ``{"path", "predictions": [{"class", "index", "probability"}, ...]}`` (best first), or
    ``{"path", "error"}`` for a file that cannot be read — the others are still predicted.

    Runs the fast path (``fast=False``: the plain fp32 model); for repeated calls build a :class:`Predictor` once.
    """
    predictor = Predictor(source, device, fast=fast, precision=precision, backend=backend, retune=retune)
    return predictor(inputs, top_k=top_k, batch_size=batch_size)
