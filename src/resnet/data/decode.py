"""Decoding one image file to a uint8 tensor, with the bad-image policy: the one decoder of every path.

Training (tensor cache and DataLoader workers), ``resnet data info``, evaluation and ``resnet predict`` all decode
through :func:`decode_image`, so the same file gives the same pixels everywhere. PIL opens the header first and the
size is bounded before anything is allocated: at most :data:`MAX_PIXELS` pixels (PIL's decompression-bomb limit),
an aspect ratio of at most :data:`MAX_ASPECT_RATIO`, and, when the caller says to which shorter side the image
will be resized, at most :data:`MAX_RESIZED_PIXELS` after resizing; before that, the file itself is bounded by
its size (``fstat``, or a tar member's header) before a byte of it is read: :func:`max_file_bytes`. JPEGs in RGB
or grayscale are then decoded by torchvision (libjpeg-turbo, faster than PIL), anything else (PNG, palette, RGBA,
CMYK, 16-bit) by PIL.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2.functional import pil_to_tensor

from resnet.errors import ConfigError, DataError
from resnet.files import read_regular

MODES = ("RGB", "L")
MAX_PIXELS = 89_478_485  # PIL's default Image.MAX_IMAGE_PIXELS, kept even if a caller disables PIL's guard
MAX_ASPECT_RATIO = 50  # wider than any photograph or panorama; a 20000x1 strip would resize to 256x5,120,000
MAX_RESIZED_PIXELS = 64 * 1024 * 1024  # after resizing the shorter side (192 MB as uint8 RGB)
# Any image within MAX_PIXELS fits, even uncompressed as 8-bit RGBA (358 MB); RESNET_MAX_IMAGE_BYTES raises it.
MAX_FILE_BYTES = 512 * 1024 * 1024
FILE_LIMIT_SETTING = "RESNET_MAX_IMAGE_BYTES"
# Part of the tensor cache's key: bump when a change here decodes any file to other pixels.
DECODER_VERSION = "decode-v2"  # v2: transparent pixels composited on white (as predict always did)


class BadImageError(DataError):
    """An image file that cannot be decoded (empty, truncated, corrupt, not an image, or too large to decode)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(
            f"cannot decode image {name}: {reason}; remove or replace the file, or pass --on-bad-image skip"
        )
        self.name = name
        self.reason = reason


def max_file_bytes() -> int:
    """The largest image file read (``RESNET_MAX_IMAGE_BYTES`` overrides :data:`MAX_FILE_BYTES`): a 3 GB file is
    refused from its size, never read whole into memory."""
    return int(os.environ.get(FILE_LIMIT_SETTING, MAX_FILE_BYTES))


def read_image_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of an image file: a regular file (:func:`resnet.files.read_regular`) of at most
    :func:`max_file_bytes`, checked before a byte is read. Raises ``OSError``."""
    return read_regular(path, max_file_bytes(), FILE_LIMIT_SETTING)


def check_file_size(size: int, name: str) -> None:
    """Refuse, from its size alone (a tar header), an image file above :func:`max_file_bytes`."""
    limit = max_file_bytes()
    if size > limit:
        raise BadImageError(
            name,
            f"the file is {size:,} bytes, above the limit of {limit:,} bytes for an image (set "
            f"{FILE_LIMIT_SETTING} to read larger ones)",
        )


def check_size(width: int, height: int, name: str, resize_to: int | None = None) -> None:
    """Refuse, from the header alone, an image too large to decode or (resized to ``resize_to``) to resize."""
    if width < 1 or height < 1:
        raise BadImageError(name, f"it has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise BadImageError(
            name,
            f"refused as a possible decompression bomb ({width}x{height} = {width * height:,} pixels, above the "
            f"limit of {MAX_PIXELS:,}); downscale it",
        )
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        raise BadImageError(
            name,
            f"its aspect ratio is {ratio:,.0f}:1 ({width}x{height} pixels), above the limit of {MAX_ASPECT_RATIO}:1 "
            "(resizing its shorter side would need a huge image); crop it",
        )
    if resize_to is not None:
        short, long = min(width, height), max(width, height)
        resized = resize_to * max(1, round(long * resize_to / short))
        if resized > MAX_RESIZED_PIXELS:
            raise BadImageError(
                name,
                f"resizing its shorter side to {resize_to} would make {resized:,} pixels ({width}x{height} now), "
                f"above the limit of {MAX_RESIZED_PIXELS:,}; crop or downscale it",
            )


def decode_image(data: bytes, name: str, mode: str = "RGB", resize_to: int | None = None) -> Tensor:
    """Decode image bytes to a uint8 tensor, ``(3, H, W)`` for ``mode="RGB"``, ``(1, H, W)`` for ``"L"``.

    16-bit grayscale keeps its high byte (never saturated); transparent pixels are shown on white. ``resize_to``:
    the shorter side the caller will resize to, bounded before decoding. Raises :class:`BadImageError`.
    """
    if mode not in MODES:
        raise ConfigError(f"image mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not data:
        raise BadImageError(name, "the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))  # header only: PIL's bomb guard runs here
        check_size(*image.size, name, resize_to)
        if image.format == "JPEG" and image.mode in ("RGB", "L") and mode == "RGB":
            try:
                with warnings.catch_warnings():
                    # torchvision 0.29 deprecates its decoders for TorchCodec; still the fastest JPEG path here.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
            except RuntimeError:
                pass  # let PIL give the definitive verdict (and message) below
        image.load()
        if image.mode.startswith("I"):  # 16-bit (or 32-bit integer) grayscale: PIL's convert would saturate it
            gray = _wide_gray(image)
            return gray.unsqueeze(0).expand(3 if mode == "RGB" else 1, -1, -1).contiguous()
        if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info):
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image)  # transparent pixels shown on white, as viewers do
        if image.mode != mode:
            image = image.convert(mode)
        return pil_to_tensor(image)
    except BadImageError:
        raise  # already names the file (a ValueError, so it must not be wrapped below)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BadImageError(name, f"refused as a possible decompression bomb ({error})") from error
    except Image.UnidentifiedImageError as error:
        raise BadImageError(name, "not a recognised image format") from error
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise BadImageError(name, str(error) or type(error).__name__) from error


def _wide_gray(image: Image.Image) -> Tensor:
    """16-bit grayscale as 8 bits by its high byte (``v >> 8``, as PIL and libpng do for 16-bit RGB, so a gray
    image decodes the same in either form), ``(H, W)``.

    PNG's 16-bit grayscale opens as ``I;16`` (or ``I``); 32-bit integer images whose values exceed 16 bits are
    scaled by their own maximum.
    """
    values = np.asarray(image)
    if values.dtype.kind == "u" and values.dtype.itemsize == 2:
        return torch.from_numpy((values >> 8).astype(np.uint8))
    values = np.clip(values.astype(np.int64), 0, None)
    top = int(values.max()) if values.size else 0
    scaled = values >> 8 if top <= 65535 else values * 255 // top
    return torch.from_numpy(scaled.astype(np.uint8))
