"""Which pipeline an image folder trains on when ``pipeline="auto"``: small same-size images (CIFAR, MNIST, Tiny
ImageNet scale) on the tensor pipeline at their own size with CIFAR-style augmentation, anything else on the
ImageNet pipeline (DataLoader workers, 224 crops). Upscaling 32x32 images to 224 costs ~50x the compute for nothing.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass

from PIL import Image

from resnet.data.config import DataConfig
from resnet.data.sources.folder import DirReader, FolderSplit, ImageFolderIndex

SMALL_SIDE = 64  # at most this many pixels a side: trained at their own size (CIFAR 32, MNIST 28, Tiny ImageNet 64)
TENSOR_BYTES = 4 << 30  # decoded uint8 images held in memory (and on the device) by the tensor pipeline
SAMPLE = 64  # images whose headers are read to measure the folder
DEFAULT_CROP = 224  # the ImageNet pipeline's training crop when data.crop_size is not set
# Options only the ImageNet pipeline has: setting one asks for it.
LOADER_OPTIONS = ("crop_size", "eval_crop_size", "eval_resize")


@dataclass(frozen=True)
class PipelineChoice:
    """``pipeline`` ("tensor" or "loader") and ``reason``, one line for the run's header."""

    pipeline: str
    reason: str


def sample_sizes(split: FolderSplit, count: int = SAMPLE) -> list[tuple[int, int]]:
    """``(height, width)`` of up to ``count`` training images, from their headers (nothing is decoded): evenly
    spaced in a directory, the first ones of an archive (one sequential read, however large it is)."""
    keys = [key for key, _ in split.samples]
    if isinstance(split.reader, DirReader):
        keys = keys[:: max(1, len(keys) // count)]
    sizes: list[tuple[int, int]] = []
    for _, data in split.reader.iter_bytes(keys):
        if not isinstance(data, bytes):  # an unreadable file: reported, with its policy, when it is decoded
            continue
        try:
            width, height = Image.open(io.BytesIO(data)).size
        except Exception:  # a bad image is reported, with its policy, when it is decoded
            continue
        sizes.append((height, width))
        if len(sizes) == count:
            break
    return sizes


def choose_pipeline(cfg: DataConfig, index: ImageFolderIndex) -> PipelineChoice:
    """The pipeline of ``cfg.pipeline`` if set, else the one the folder's image sizes call for, with why."""
    if cfg.pipeline != "auto":
        return PipelineChoice(cfg.pipeline, f"data.pipeline = {cfg.pipeline} (set)")
    asked = [f"data.{key}" for key in LOADER_OPTIONS if getattr(cfg, key) is not None]
    if cfg.augment == "rrc":
        asked.append("data.augment = rrc")
    if asked:
        return PipelineChoice("loader", f"ImageNet pipeline: {', '.join(asked)} set")
    sizes = sample_sizes(index.splits["train"])
    if not sizes:
        return PipelineChoice("loader", "ImageNet pipeline: no training image could be measured")
    (height, width), _ = Counter(sizes).most_common(1)[0]
    shown = f"{width}x{height}"
    if len(set(sizes)) > 1:
        low, high = min(sizes), max(sizes)
        span = f"{low[1]}x{low[0]} to {high[1]}x{high[0]}"
        return PipelineChoice("loader", f"ImageNet pipeline at {DEFAULT_CROP}x{DEFAULT_CROP}: images of {span}")
    if max(height, width) > SMALL_SIDE:
        return PipelineChoice(
            "loader", f"ImageNet pipeline at {DEFAULT_CROP}x{DEFAULT_CROP}: {shown} images (over {SMALL_SIDE} px)"
        )
    images = sum(len(split.samples) for split in index.splits.values())
    if images * 3 * height * width > TENSOR_BYTES:
        gib = images * 3 * height * width / (1 << 30)
        return PipelineChoice("loader", f"ImageNet pipeline: {images} {shown} images ({gib:.1f} GiB) exceed memory")
    return PipelineChoice(
        "tensor",
        f"tensor pipeline at {shown}, the images' own size (all {len(sizes)} sampled are {shown}, at most "
        f"{SMALL_SIDE} px), with CIFAR-style pad-4 crop + flip; --set data.pipeline=loader for the ImageNet pipeline",
    )
