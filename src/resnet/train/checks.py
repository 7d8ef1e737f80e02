"""Small checks around a run that the trainer calls: the configuration, the input size, memory, and the stop on
divergence, whose message must name a checkpoint that exists and is good (or say there is none)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from resnet.config import Config, validate
from resnet.errors import ConfigError, TrainingDivergedError
from resnet.runs.checkpoint import non_finite_entry


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


ADVICE = "lower the learning rate (--lr) or use a warm-up"


def last_good(path: Path, saved_iteration: int | None) -> str:
    """``last.pt`` when this run wrote (or resumed from) a finite one, else a plain statement that there is none."""
    if saved_iteration is not None and Path(path).is_file():
        return f"The last good checkpoint is {path} (iteration {saved_iteration})"
    return "No checkpoint was written before that"


def loss_diverged(iteration: int, lr: float, path: Path, saved_iteration: int | None) -> TrainingDivergedError:
    return TrainingDivergedError(
        f"the training loss became NaN or infinite at iteration {iteration} (lr {lr:.4g}); stopped. "
        f"{last_good(path, saved_iteration)}; {ADVICE}"
    )


def check_finite(state: dict[str, Any], iteration: int, lr: float, path: Path, saved_iteration: int | None) -> None:
    """Raise before a save when the weights or optimizer state hold NaN/inf (the loss may still have been finite)."""
    bad = non_finite_entry(state)
    if bad is not None:
        raise TrainingDivergedError(
            f"the weights became NaN or infinite by iteration {iteration} ({bad}, lr {lr:.4g}); stopped without "
            f"writing a checkpoint. {last_good(path, saved_iteration)}; {ADVICE}"
        )
