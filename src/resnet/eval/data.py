"""Evaluation streams built from a checkpoint: its dataset and split by default, always its saved preprocessing.

The normalisation is the one saved at training time (not recomputed), so a checkpoint evaluated on another
dataset, or with another ``--subset``, still sees its inputs exactly as in training.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from resnet.data.augment import EvalTransform
from resnet.data.build import HeldOut, held_out_split, to_grayscale
from resnet.data.config import DataConfig, canonical_view
from resnet.data.loader_pipeline import FolderDataset, LoaderEvalStream
from resnet.data.sources.folder import FolderSplit
from resnet.data.splits import stratified_subset
from resnet.data.tensor_pipeline import Normalizer, TensorEvalStream
from resnet.data.views import PAPER_SCALES
from resnet.errors import ConfigError
from resnet.eval import SPLITS, VIEWS


def default_scales(crop: int) -> list[int]:
    """The paper's {224, 256, 384, 480, 640} for 224-pixel crops; proportionate {s, 1.25s, 1.5s} for small images."""
    if crop >= 112:
        return [round(crop * s / 224) for s in PAPER_SCALES]
    return [crop, round(crop * 1.25), round(crop * 1.5)]


@dataclass
class EvalData:
    """One stream per pass (one pass, or one per scale for multi-scale testing) over the same images."""

    passes: list[Any]
    num_images: int
    dataset: str
    scales: list[int] | None = None
    indices: Tensor | None = None  # for a validation split carved from the training set: which images, sorted
    location: str = ""  # where the images were read (a registered dataset's folder or the image folder)


class TenCropStream:
    """10-crop of whole normalised images of a small dataset: zero-pad (as the training crops), the four corners
    and the center, and their flips -> (B, 10, C, H, W)."""

    def __init__(self, base: TensorEvalStream, pad: int = 4) -> None:
        self.base, self.pad = base, pad

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in self.base:
            height, width = x.shape[-2:]
            padded = F.pad(x, (self.pad,) * 4)
            yield torch.stack(list(TF.ten_crop(padded, [height, width])), dim=1), y


class RescaledStream:
    """Normalised whole images resized so their shorter side is ``side`` (multi-scale testing)."""

    def __init__(self, base: TensorEvalStream, side: int) -> None:
        self.base, self.side = base, side

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in self.base:
            yield TF.resize(x, [self.side], antialias=True), y


def check_classes(found: list[str], meta: dict[str, Any], where: str, allow_other: bool) -> None:
    """The data's classes must be the checkpoint's (label i is scored against output i): other names are refused
    unless ``allow_other`` (``--allow-other-classes``), more classes than outputs always."""
    expected = list(meta.get("class_names") or [])
    if not expected or found == expected:
        return
    if len(found) > len(expected):
        raise ConfigError(
            f"{where} has {len(found)} classes, the checkpoint's model has {len(expected)} outputs; evaluate on data "
            "with the checkpoint's classes"
        )
    if not allow_other:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        theirs = ", ".join(expected[:4]) + (", ..." if len(expected) > 4 else "")
        raise ConfigError(
            f"{where} has classes {shown}, the checkpoint was trained on {theirs}; evaluate on data with the same "
            "classes, or pass --allow-other-classes to score class i of the data against output i anyway"
        )


def build_eval_data(
    meta: dict[str, Any],
    config: DataConfig | None = None,
    *,
    seed: int = 0,
    dataset: str | None = None,
    split: str = "test",
    view: str = "center",
    scales: Sequence[int] | None = None,
    batch_size: int | None = None,
    data_dir: str | None = None,
    device: torch.device | str = "cpu",
    num_workers: int | None = None,
    allow_other_classes: bool = False,
    max_images: int | None = None,
) -> EvalData:
    """The evaluation passes of ``view`` over ``split`` of ``dataset`` (default: the run's own, ``config``, split
    with the run's ``seed`` by :func:`resnet.data.held_out_split`, as training split it)."""
    view = canonical_view(view)
    if view not in VIEWS:
        raise ConfigError(f"views must be one of {', '.join(VIEWS)}, got {view!r}")
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    run = config or DataConfig()
    num_workers = run.num_workers if num_workers is None else num_workers
    cfg = replace(run, dataset=dataset or run.dataset, data_dir=data_dir or run.data_dir, num_workers=num_workers)
    if not cfg.dataset:
        raise ConfigError("the checkpoint names no dataset: pass --dataset NAME or PATH")
    pre = meta["preprocessing"]
    crop = int(min(pre["crop"]))
    scales = list(scales) if scales else (default_scales(crop) if view == "multiscale" else None)
    device = torch.device(device)
    bs = batch_size or cfg.evaluation_batch()
    trained_on_tensors = meta.get("dataset", {}).get("pipeline", "tensor") == "tensor"
    own_dataset = config is not None and cfg.dataset == config.dataset
    # A folder goes through the tensor pipeline as in training (its own folder, or a per-pixel mean image that
    # needs same-size images); any other folder through DataLoader workers with the saved resize and crop.
    decode = trained_on_tensors and (own_dataset or pre.get("mean_image") is not None)
    held = held_out_split(cfg, split, seed=seed, decode=decode)
    if held.files is None:
        assert held.images is not None and held.labels is not None
        check_classes(held.classes, meta, held.name, allow_other_classes)
        return _tensor_passes(held, held.images, held.labels, pre, split, view, scales, bs, device, max_images)
    if pre["mode"] != "RGB":
        raise ConfigError(
            f"this checkpoint takes {pre['mode']} images; image folders of other sizes are read as RGB. Evaluate "
            "on a registered dataset or a same-size folder decoded into tensors (the run's own)"
        )
    check_classes(held.classes, meta, held.name, allow_other_classes)
    chosen = held.files
    if max_images is not None:
        kept = stratified_subset(torch.tensor([label for _, label in chosen.samples]), max_images, seed=0).tolist()
        chosen = FolderSplit(chosen.name, chosen.reader, [chosen.samples[i] for i in kept], chosen.source)
    if not chosen.samples:
        raise ConfigError(f"{cfg.dataset} has no {split} images; use --split test")
    mean, std = torch.tensor(pre["mean"]) * 255, torch.tensor(pre["std"]) * 255
    resize = int(pre["resize"])

    def stream(transform: EvalTransform, batch: int) -> LoaderEvalStream:
        dataset_ = FolderDataset(chosen, transform, mean, std, cfg.on_bad_image)
        return LoaderEvalStream(
            dataset_, batch_size=batch, device=device, num_workers=cfg.workers(), channels_last=False
        )

    if view == "center":
        passes = [stream(EvalTransform("center", crop, resize), bs)]
    elif view == "ten-crop":
        passes = [stream(EvalTransform("ten-crop", crop, resize), max(1, bs // 10))]
    else:
        passes = [stream(EvalTransform("full", crop, side), 1) for side in scales or []]
    return EvalData(passes, len(chosen.samples), held.name, scales, location=held.location)


def _tensor_passes(
    held: HeldOut,
    x: Tensor,
    y: Tensor,
    pre: dict[str, Any],
    split: str,
    view: str,
    scales: list[int] | None,
    bs: int,
    device: torch.device,
    max_images: int | None,
) -> EvalData:
    """Decoded images normalised with the checkpoint's saved statistics, in the passes of ``view``."""
    chosen_indices = held.indices
    if max_images is not None:
        keep = stratified_subset(y, max_images, seed=0)
        x, y = x[keep], y[keep]
        chosen_indices = chosen_indices[keep] if chosen_indices is not None else None
    if len(y) == 0:
        raise ConfigError(f"{held.name} has no {split} images (the run had no validation split?); use --split test")
    channels = 1 if pre["mode"] == "L" else 3
    if channels == 1 and x.shape[1] == 3:
        x = to_grayscale(x)  # trained on RGB images converted to grayscale (in_chans=1)
    if x.shape[1] != channels:
        raise ConfigError(f"{held.name} has {x.shape[1]}-channel images; the checkpoint was trained on {channels}")
    mean = pre["mean_image"] if pre.get("mean_image") is not None else torch.tensor(pre["mean"]).reshape(-1, 1, 1)
    if mean.dim() == 3 and mean.shape[1:] != x.shape[2:] and mean.shape[1] > 1:
        raise ConfigError(
            f"the checkpoint subtracts a {mean.shape[1]}x{mean.shape[2]} mean image; {held.name} images are "
            f"{x.shape[2]}x{x.shape[3]}"
        )
    norm = Normalizer(mean * 255, torch.tensor(pre["std"]) * 255, pre["in_chans"], False).to(device)
    base = TensorEvalStream(x.to(device), y.to(device), norm, bs)
    if view == "center":
        passes: list[Any] = [base]
    elif view == "ten-crop":
        passes = [TenCropStream(base)]
    else:
        passes = [RescaledStream(base, side) for side in scales or []]
    return EvalData(passes, len(y), held.name, scales, chosen_indices, held.location)
