"""The counters of a training run that a checkpoint must carry for ``--resume`` to continue exactly.

Saving and restoring are written side by side, so that they cannot drift apart. The checkpoint keys are those of
format 2 (checkpoints written before this module existed resume as well).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


def fresh_sums() -> dict[str, float]:
    """Running sums of a stretch of training: loss sum, wrong predictions, images, iterations, seconds."""
    return {"loss": 0.0, "wrong": 0.0, "seen": 0, "iterations": 0, "time": 0.0}


@dataclass
class TrainingState:
    iteration: int = 0  # updates applied
    best_val_error: float = math.inf
    best_iteration: int | None = None
    elapsed: float = 0.0  # training seconds, summed over resumed segments
    wall_before: float = 0.0  # wall-clock seconds of earlier segments (evaluations and checkpoints included)
    interval: dict[str, float] = field(default_factory=fresh_sums)  # since the last evaluation
    curve: dict[str, float] = field(default_factory=fresh_sums)  # since the last point of the dense train curve
    ema_best_val_error: float = math.inf
    ema_best_iteration: int | None = None

    def add(self, sums: dict[str, float]) -> None:
        for key, value in sums.items():
            self.interval[key] += value
            self.curve[key] += value

    def to_checkpoint(self, *, wall_time: float, steps_per_epoch: int, with_ema: bool) -> dict[str, Any]:
        """The checkpoint's keys, read back by :meth:`from_checkpoint` just below (keep the two side by side)."""
        fields: dict[str, Any] = {
            "iteration": self.iteration,
            "best_val_error": self.best_val_error,
            "best_iteration": self.best_iteration,
            "elapsed": self.elapsed,
            "wall_time": wall_time,  # the total at save time: the next segment's wall_before
            "interval": dict(self.interval),
            "curve": dict(self.curve),
        }
        if with_ema:
            fields["ema_best"] = [self.ema_best_val_error, self.ema_best_iteration]
        fields["position"] = {"epoch": self.iteration // steps_per_epoch, "batch": self.iteration % steps_per_epoch}
        return fields

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any], *, with_ema: bool) -> TrainingState:
        best = checkpoint["best_iteration"]
        state = cls(
            iteration=int(checkpoint["iteration"]),
            best_val_error=float(checkpoint["best_val_error"]),
            best_iteration=None if best is None else int(best),
            elapsed=float(checkpoint["elapsed"]),
            wall_before=float(checkpoint["wall_time"]),
            interval=dict(checkpoint["interval"]),
            curve=dict(checkpoint["curve"]),
        )
        if with_ema:
            error, state.ema_best_iteration = checkpoint["ema_best"]
            state.ema_best_val_error = float(error)
        return state
