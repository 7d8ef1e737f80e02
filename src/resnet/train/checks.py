"""Small checks and counts around a run that the trainer calls (kept out of the loop's module)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from resnet.config import Config, validate
from resnet.errors import ConfigError


def check_run(config: Config) -> None:
    """Everything a run's configuration can be checked for before any data is read or file written: its fields,
    and that the model exists (`--model resnet21` is named at once, not after looking for data)."""
    from resnet.models import get_spec

    validate(config)
    get_spec(config.model.name)


def check_input_size(name: str, image_size: tuple[int, int]) -> None:
    """Refuse, before the model is built or anything written, images smaller than the network can take."""
    from resnet.models import min_input_size

    minimum = min_input_size(name)
    if min(image_size) < minimum:
        raise ConfigError(
            f"{name} needs images of at least {minimum}x{minimum} pixels, the data has {image_size[0]}x"
            f"{image_size[1]}; choose a model for small images (e.g. resnet20) or a dataset of larger images"
        )


@contextlib.contextmanager
def out_of_memory_hint(batch_size: int, accum_steps: int, device: str) -> Iterator[None]:
    """A batch too large for the device's memory becomes one line saying so, with a batch size to try."""
    try:
        yield
    except (torch.OutOfMemoryError, RuntimeError) as error:
        text = str(error)
        if not isinstance(error, torch.OutOfMemoryError) and not any(
            marker in text for marker in ("out of memory", "can't allocate memory", "Failed to allocate")
        ):
            raise
        smaller = max(1, batch_size // 2)
        raise ConfigError(
            f"a batch of {batch_size} images does not fit in the memory of {device} ({text.splitlines()[0][:120]}); "
            f"try --batch-size {smaller}"
            + (f" with --accum-steps {accum_steps * 2}" if smaller > 1 else "")
            + " (the same update in smaller pieces)"
        ) from error


def skipped_images(data: Any) -> int:
    """Unreadable images skipped under ``--on-bad-image skip`` (when decoding, and by every loader stream)."""
    streams = (data.train, getattr(data, "val", None), data.test)
    return int(getattr(data, "skipped", 0)) + sum(int(getattr(s, "skipped", 0) or 0) for s in streams)
