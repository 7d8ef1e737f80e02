"""The divergence stop's message, which must name a checkpoint that exists and is good (or say there is none)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet.errors import TrainingDivergedError
from resnet.runs.checkpoint import non_finite_entry

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


def weights_diverged(
    iteration: int, entry: str, lr: float, path: Path, saved_iteration: int | None
) -> TrainingDivergedError:
    return TrainingDivergedError(
        f"the weights became NaN or infinite by iteration {iteration} ({entry}, lr {lr:.4g}); stopped without "
        f"writing a checkpoint. {last_good(path, saved_iteration)}; {ADVICE}"
    )


def check_finite(state: dict[str, Any], iteration: int, lr: float, path: Path, saved_iteration: int | None) -> None:
    """Raise before a save when the weights or optimizer state hold NaN/inf (the loss may still have been finite)."""
    bad = non_finite_entry(state)
    if bad is not None:
        raise weights_diverged(iteration, bad, lr, path, saved_iteration)
