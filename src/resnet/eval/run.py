"""``run_eval``: a checkpoint's top-1/top-5 error and loss, single-view, 10-crop or multi-scale."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Sequence, Sized
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import Tensor, nn

from resnet.eval.data import EvalData, build_eval_data
from resnet.eval.evaluate import evaluate_metrics, fully_convolutional, topk_errors
from resnet.files import check_output, write_output
from resnet.runtime import resolve_device


def with_progress(stream: Iterable[Any], desc: str, output: TextIO | None = None) -> Iterable[Any]:
    """``stream`` with a progress bar on ``output`` (stderr) when that is a terminal, as training shows one: a long
    evaluation should not look hung. Elsewhere (logs, pipes) the stream as it is."""
    output = sys.stderr if output is None else output
    if not (hasattr(output, "isatty") and output.isatty()):
        return stream
    from tqdm.auto import tqdm

    total = len(stream) if isinstance(stream, Sized) else None
    return tqdm(stream, total=total, desc=desc, unit="batch", leave=False, file=output, dynamic_ncols=True)


def third_party_notes(meta: dict[str, Any], dataset: str) -> list[str]:
    """What a user needs to read a converted third-party checkpoint's numbers: what its own accuracy was measured
    on, and that ``cifar10-jpeg`` is a lossy copy of the test set it was measured on."""
    from resnet.models import akamaster

    if meta.get("source") != akamaster.SOURCE:
        return []
    notes = [
        f"{akamaster.SOURCE}'s best_prec1 is its training script's best top-1 accuracy on the official CIFAR-10 "
        "test set (the original images), chosen on that same test set"
    ]
    if dataset == "cifar10-jpeg":
        notes.append(
            "cifar10-jpeg is a JPEG (lossy) copy of CIFAR-10: nets trained on the original images make more errors "
            "on it, so expect a higher error here than their best_prec1 implies"
        )
    return notes


def averaged_score_maps(score_maps: nn.Module, data: EvalData, flip: bool = True) -> tuple[Tensor, Tensor]:
    """Softmax scores of a network giving (N, classes, h, w) score maps (a fully-convolutional model), averaged
    over positions, then over scales and flips: ``(probabilities (N, classes), labels (N,))``; every pass walks
    the same images in the same order."""
    total: Tensor | None = None
    labels: Tensor | None = None
    with torch.inference_mode():
        for stream in data.passes:
            probs, seen = [], []
            for x, y in stream:
                p = score_maps(x).mean(dim=(2, 3)).float().softmax(1)
                if flip:
                    p = (p + score_maps(x.flip(-1)).mean(dim=(2, 3)).float().softmax(1)) / 2
                probs.append(p)
                seen.append(y)
            scores = torch.cat(probs)
            total = scores if total is None else total + scores
            labels = torch.cat(seen) if labels is None else labels
    if total is None or labels is None:
        raise ValueError("no evaluation passes")
    return total / len(data.passes), labels


def run_eval(
    checkpoint: str | Path,
    *,
    dataset: str | None = None,
    split: str = "test",
    views: str = "center",
    scales: Sequence[int] | None = None,
    batch_size: int | None = None,
    data_dir: str | None = None,
    device: str | torch.device = "auto",
    num_workers: int | None = None,
    json_path: str | Path | None = None,
    allow_other_classes: bool = False,
    max_images: int | None = None,
    fast: bool = True,
    precision: str = "auto",
    backend: str = "auto",
    retune: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Evaluate a checkpoint with its saved model, classes and preprocessing; the run's dataset by default.

    The model runs on the inference fast path (BN folded, bf16 where native; ``backend`` auto, eager, compile or
    onnxruntime: see ``prepare_for_inference``), or with ``fast=False`` as trained. Returns (and with ``json_path``
    writes) top-1/top-5 error in percent, loss, images, seconds and the inference path used (``inference``,
    ``inference_choices``). ``json_path`` never replaces the checkpoint, and another checkpoint or a run's file
    only with ``force`` (:func:`resnet.files.check_output`, checked before anything is evaluated).
    """
    from resnet.inference import load_model

    output = None if json_path is None else check_output(json_path, inputs=[checkpoint], force=force, option="--json")
    from resnet.inference.fast import describe, inference_options, prepare_for_inference
    from resnet.runs.meta import require_preprocessing

    options = inference_options(fast, precision, backend, retune)
    loaded = load_model(checkpoint)
    require_preprocessing(loaded.meta, loaded.path)
    device = resolve_device(str(device))
    data = build_eval_data(
        loaded.meta,
        loaded.config.data if loaded.config else None,
        seed=loaded.config.seed if loaded.config else 0,
        dataset=dataset,
        split=split,
        view=views,
        scales=scales,
        batch_size=batch_size,
        data_dir=data_dir,
        device=device,
        num_workers=num_workers,
        allow_other_classes=allow_other_classes,
        max_images=max_images,
    )
    target = fully_convolutional(loaded.model) if views == "multiscale" else loaded.model
    if fast and views == "center" and loaded.meta.get("input_size"):  # automatic choices timed on this work
        batch = getattr(data.passes[0], "batch_size", None) or 256
        options.update(batch_shape=(int(batch), *map(int, loaded.meta["input_size"])), work_images=data.num_images)
    model = prepare_for_inference(target, device, **options)  # the first call compiles with backend="compile"
    start = time.perf_counter()
    if views == "multiscale":
        probs, labels = averaged_score_maps(model, data)
        top1, top5 = topk_errors(probs, labels)
        loss = float(-probs.gather(1, labels[:, None]).clamp_min(1e-12).log().mean()) if len(labels) else math.nan
        images = len(labels)
    else:
        metrics = evaluate_metrics(model, with_progress(data.passes[0], f"evaluating {split}"))
        top1, top5, loss, images = metrics.top1_error, metrics.top5_error, metrics.loss, metrics.images
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "model": loaded.meta["model"]["name"],
        "dataset": data.dataset,
        "location": data.location,
        "max_images": max_images,
        "classes": len(loaded.class_names),
        "split": split,
        "views": views,
        "scales": data.scales,
        "top1_error": top1,
        "top5_error": top5 if len(loaded.class_names) > 5 else None,  # no top-5 error with 5 classes or fewer
        "top1_accuracy": None if math.isnan(top1) else 100.0 - top1,
        "loss": loss,
        "images": images,
        "seconds": round(seconds, 3),
        "images_per_sec": round(images / seconds, 1) if seconds > 0 else None,
        "device": str(device),
        "inference": describe(model.choices),
        "inference_choices": model.choices,
        "notes": third_party_notes(loaded.meta, data.dataset),
    }
    if output is not None:
        write_output(output, json.dumps(result, indent=2) + "\n")
    return result
