"""Decoding one image file to an RGB uint8 tensor, with the bad-image policy.

PIL opens the header first, so its decompression-bomb guard stays on for every file; JPEGs in RGB or grayscale are
then decoded by torchvision (libjpeg-turbo, faster than PIL), anything else (PNG, palette, RGBA, CMYK, ...) by
PIL and converted to RGB.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2.functional import pil_to_tensor

from resnet.data.config import ON_BAD_IMAGE
from resnet.errors import ConfigError, DataError

BAD_IMAGE_POLICIES = ON_BAD_IMAGE


def check_policy(on_bad_image: str) -> str:
    """Validate ``--on-bad-image``."""
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise ConfigError(f"on_bad_image must be one of {', '.join(BAD_IMAGE_POLICIES)}, got {on_bad_image!r}")
    return on_bad_image


class BadImageError(DataError):
    """An image file that cannot be decoded (empty, truncated, corrupt, not an image)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(
            f"cannot decode image {name}: {reason}; remove or replace the file, or pass --on-bad-image skip"
        )
        self.name = name


def decode_rgb(data: bytes, name: str) -> Tensor:
    """Decode image bytes to a ``(3, H, W)`` uint8 tensor; raise :class:`BadImageError` naming the file."""
    if not data:
        raise BadImageError(name, "the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # header only: size checks (bomb guard) happen here
        if image.format == "JPEG" and image.mode in ("RGB", "L"):
            try:
                with warnings.catch_warnings():
                    # torchvision 0.29 deprecates its decoders for TorchCodec; still the fastest JPEG path here.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
            except RuntimeError:
                pass  # let PIL give the definitive verdict (and message) below
        image.load()
        if image.mode.startswith("I"):  # 16-bit (or 32-bit integer) grayscale: PIL's convert would saturate it
            return _wide_gray_to_rgb(image)
        if image.mode != "RGB":
            image = image.convert("RGB")
        return pil_to_tensor(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BadImageError(name, f"refused as a possible decompression bomb ({error})") from error
    except Image.UnidentifiedImageError as error:
        raise BadImageError(name, "not a recognised image format") from error
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise BadImageError(name, str(error) or type(error).__name__) from error


def _wide_gray_to_rgb(image: Image.Image) -> Tensor:
    """Scale 16-bit grayscale to 8 bits by its high byte (``v >> 8``, as PIL and libpng do for 16-bit RGB, so
    a gray image decodes the same in either form), replicated to three channels.

    PNG's 16-bit grayscale opens as ``I;16`` (or ``I``); 32-bit integer images whose values exceed 16 bits are
    scaled by their own maximum.
    """
    values = np.clip(np.asarray(image).astype(np.int64), 0, None)
    top = int(values.max()) if values.size else 0
    scaled = values >> 8 if top <= 65535 else values * 255 // top
    gray = torch.from_numpy(scaled.astype(np.uint8))
    return gray.unsqueeze(0).expand(3, -1, -1).contiguous()
