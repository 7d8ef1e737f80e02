"""Images as a trained network sees them: decoded from a file, resized, cropped and normalised as in training."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from resnet.data.decode import BadImageError, decode_image, read_image_file
from resnet.data.sources.folder import IMAGE_EXTENSIONS
from resnet.errors import DataError, DataNotFoundError

PathLike = str | os.PathLike[str]


class UnreadableImageError(DataError):
    """An input image that cannot be read or decoded."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"cannot read image {name}: {reason}")
        self.name = name


def read_image(path: PathLike, mode: str, resize_to: int | None = None) -> Tensor:
    """An image file as uint8 (C, H, W) in ``mode`` ("RGB" or "L"), decoded as in training
    (:func:`resnet.data.decode.decode_image`: 16-bit kept, transparent pixels on white, size bounded before
    decoding, also after resizing the shorter side to ``resize_to``); the file's size is bounded before it is read.

    Raises :class:`UnreadableImageError` naming the file when it cannot be read or decoded.
    """
    name = str(path)
    try:
        data = read_image_file(path)
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
