"""What ``build_data`` returns, and how it is identified: the bundle, its saved preprocessing (from the statistics
of the training images), its fingerprint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from resnet.data.loader_pipeline import LoaderEvalStream, LoaderTrainStream
from resnet.data.sources.base import ArrayDataset
from resnet.data.sources.folder import FolderSplit, ImageFolderIndex
from resnet.data.tensor_pipeline import TensorEvalStream, TensorTrainStream, generator
from resnet.errors import DataError

TrainStream = TensorTrainStream | LoaderTrainStream
EvalStream = TensorEvalStream | LoaderEvalStream


class TrainingData(Protocol):
    """What a trainer needs of its data (a :class:`DataBundle`, or a test's fake): streams and their description.

    ``location``, ``pipeline``, ``preprocessing``, ``fingerprint`` and ``skipped`` are read when present.
    """

    train: Any  # .epoch(n) yields (x, y) batches; len() batches an epoch; .image_size
    val: Any  # None, or iterable of (x, y) batches
    test: Any
    num_classes: int
    in_chans: int
    image_size: tuple[int, int]
    class_names: list[str]
    num_train: int
    name: str


@dataclass
class DataBundle:
    """Everything a trainer needs. ``mean``/``std`` are per channel in [0, 1] units (before any expansion)."""

    train: TrainStream
    val: EvalStream | None
    test: EvalStream
    num_classes: int
    in_chans: int
    image_size: tuple[int, int]
    class_names: list[str]
    num_train: int
    num_val: int
    num_test: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str
    location: str
    pipeline: str = "tensor"
    pipeline_reason: str = ""  # for image folders: why this pipeline and input size (one line of the run's header)
    # How an image becomes a model input, saved in checkpoints (see resnet.runs.meta): colour mode, shorter
    # side and crop, mean/std in [0, 1] units, and for normalize="pixel" the mean image (C, H, W) in [0, 1].
    preprocessing: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""  # content identity of the data (a resumed run must find the same)
    skipped: int = 0  # unreadable images skipped while decoding (loader streams count their own)
    val_indices: Tensor | None = None  # which training images were held out for validation (sorted), if carved


def preprocessing_record(
    channels: int,
    in_chans: int,
    resize: int,
    crop: tuple[int, int],
    mean: Tensor,
    std: Tensor,
    mean_image: Tensor | None,
) -> dict[str, Any]:
    """The preprocessing of a bundle from its statistics in [0, 255] units (as the pipelines hold them)."""
    return {
        "mode": "L" if channels == 1 else "RGB",
        "in_chans": in_chans,
        "resize": int(resize),
        "crop": [int(crop[0]), int(crop[1])],
        "mean": [float(v) for v in (mean.flatten() / 255).tolist()],
        "std": [float(v) for v in (std.flatten() / 255).tolist()],
        "mean_image": None if mean_image is None else (mean_image.float() / 255).contiguous(),
    }


def tensor_fingerprint(data: ArrayDataset) -> str:
    """SHA-256 over the decoded images, labels and class names: the same data wherever it is stored."""
    digest = hashlib.sha256("|".join(data.classes).encode())
    for tensor in (data.train_x, data.train_y, data.test_x, data.test_y, data.val_x, data.val_y):
        if tensor is not None:
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def folder_fingerprint(index: ImageFolderIndex) -> str:
    """For folders read by workers (too large to hash): every split's file names, labels and archive sizes."""
    digest = hashlib.sha256("|".join(index.classes).encode())
    for name, split in sorted(index.splits.items()):
        digest.update(name.encode())
        offsets = getattr(split.reader, "offsets", {})
        for key, label in split.samples:
            digest.update(f"{key}|{label}|{offsets.get(key, ('', ''))[1]}\n".encode())
    return digest.hexdigest()


def _mean_std(total: Tensor, total_sq: Tensor, count: int) -> tuple[Tensor, Tensor]:
    mean = total / count
    return mean.float(), (total_sq / count - mean.square()).clamp_min(1e-12).sqrt().float()


def _chunks(x: Tensor, size: int = 4096):
    for start in range(0, len(x), size):
        yield x[start : start + size].to(torch.float64)


def channel_mean_std(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std (in [0, 255] units) of uint8 images ``(N, C, H, W)``, computed in chunks."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    total_sq = torch.zeros(x.shape[1], dtype=torch.float64)
    for chunk in _chunks(x):
        total += chunk.sum(dim=(0, 2, 3)).cpu()
        total_sq += chunk.square().sum(dim=(0, 2, 3)).cpu()
    return _mean_std(total, total_sq, x.shape[0] * x.shape[2] * x.shape[3])


def pixel_mean(x: Tensor) -> Tensor:
    """The per-pixel mean image ``(C, H, W)`` (the paper's CIFAR normalisation subtracts it)."""
    total = torch.zeros(x.shape[1:], dtype=torch.float64)
    for chunk in _chunks(x):
        total += chunk.sum(dim=0).cpu()
    return (total / len(x)).float()


def sample_mean_std(split: FolderSplit, count: int = 256, seed: int = 0) -> tuple[Tensor, Tensor, int]:
    """Per-channel mean/std ([0, 255] units) estimated from a seeded sample of readable images."""
    from resnet.data.decode import BadImageError, decode_image

    order = torch.randperm(len(split.samples), generator=generator(seed, count)).tolist()
    total, total_sq, pixels, used = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), 0, 0
    for i in order:
        if used == count:
            break
        key = split.samples[i][0]
        try:
            image = decode_image(split.reader.read(key), split.reader.describe(key)).to(torch.float64)
        except BadImageError:
            continue  # statistics only; the bad-image policy applies when the image is actually used
        total += image.sum(dim=(1, 2))
        total_sq += image.square().sum(dim=(1, 2))
        pixels += image.shape[1] * image.shape[2]
        used += 1
    if not used:
        raise DataError(f"{split.source}: none of the sampled images could be decoded")
    mean, std = _mean_std(total, total_sq, pixels)
    return mean, std, used
