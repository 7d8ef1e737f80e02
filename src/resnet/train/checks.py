"""Small checks and counts around a run that the trainer calls (kept out of the loop's module)."""

from __future__ import annotations

from typing import Any

from resnet.errors import ConfigError


def check_input_size(name: str, image_size: tuple[int, int]) -> None:
    """Refuse, before the model is built or anything written, images smaller than the network can take."""
    from resnet.models import min_input_size

    minimum = min_input_size(name)
    if min(image_size) < minimum:
        raise ConfigError(
            f"{name} needs images of at least {minimum}x{minimum} pixels, the data has {image_size[0]}x"
            f"{image_size[1]}; choose a model for small images (e.g. resnet20) or a dataset of larger images"
        )


def skipped_images(data: Any) -> int:
    """Unreadable images skipped under ``--on-bad-image skip`` (when decoding, and by every loader stream)."""
    streams = (data.train, getattr(data, "val", None), data.test)
    return int(getattr(data, "skipped", 0)) + sum(int(getattr(s, "skipped", 0) or 0) for s in streams)
