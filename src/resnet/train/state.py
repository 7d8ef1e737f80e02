"""The counters of a training run that a checkpoint must carry for ``--resume`` to continue exactly.

One table (:data:`_FIELDS`) says what is saved and how it is read back, so that saving and restoring cannot drift
apart. The checkpoint keys are those of format 2 (checkpoints written before this module existed resume as well).
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
        fields: dict[str, Any] = {
            key: read(self) for key, (read, _write) in _FIELDS.items() if key != "ema_best" or with_ema
        }
        fields["wall_time"] = wall_time
        fields["position"] = {
            "epoch": self.iteration // steps_per_epoch,
            "batch": self.iteration % steps_per_epoch,
        }
        return fields

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any], *, with_ema: bool) -> TrainingState:
        state = cls()
        for key, (_read, write) in _FIELDS.items():
            if key != "ema_best" or with_ema:
                write(state, checkpoint[key])
        return state


def _set(name: str, convert: Any) -> Any:
    def write(state: TrainingState, value: Any) -> None:
        setattr(state, name, convert(value))

    return write


def _set_ema_best(state: TrainingState, value: Any) -> None:
    error, best = value
    state.ema_best_val_error, state.ema_best_iteration = float(error), best


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


# checkpoint key -> (value from the state, state from the value)
_FIELDS: dict[str, tuple[Any, Any]] = {
    "iteration": (lambda s: s.iteration, _set("iteration", int)),
    "best_val_error": (lambda s: s.best_val_error, _set("best_val_error", float)),
    "best_iteration": (lambda s: s.best_iteration, _set("best_iteration", _optional_int)),
    "elapsed": (lambda s: s.elapsed, _set("elapsed", float)),
    "wall_time": (lambda s: s.wall_before, _set("wall_before", float)),  # saved as the total at save time
    "interval": (lambda s: dict(s.interval), _set("interval", dict)),
    "curve": (lambda s: dict(s.curve), _set("curve", dict)),
    "ema_best": (lambda s: [s.ema_best_val_error, s.ema_best_iteration], _set_ema_best),
}
