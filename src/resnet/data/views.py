"""Evaluation views of one image ``(C, H, W)``: center crop, 10-crop, full-image multi-scale resizes.

These follow the paper's ImageNet testing: the standard 10-crop (4 corners + center, and their horizontal flips)
and fully-convolutional testing on full images whose shorter side is resized to several scales.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

PAPER_SCALES = (224, 256, 384, 480, 640)  # the shorter sides of the paper's multi-scale ImageNet testing


def resize_shorter(image: Tensor, side: int) -> Tensor:
    """Resize so that the shorter side is ``side`` (aspect ratio kept, antialiased)."""
    return TF.resize(image, [side], antialias=True)


def center_crop(image: Tensor, size: int, resize: int | None = None) -> Tensor:
    """Optionally resize the shorter side to ``resize``, then take the central ``size x size`` crop."""
    if resize is not None:
        image = resize_shorter(image, resize)
    return TF.center_crop(image, [size, size])


def ten_crop(image: Tensor, size: int, resize: int | None = None) -> Tensor:
    """The 10-crop view ``(10, C, size, size)``: corners and center, then the same of the flipped image."""
    if resize is not None:
        image = resize_shorter(image, resize)
    return torch.stack(list(TF.ten_crop(image, [size, size])))


def full_image(image: Tensor, side: int) -> Tensor:
    """The whole image, shorter side resized to ``side`` (for fully-convolutional testing)."""
    return resize_shorter(image, side)
