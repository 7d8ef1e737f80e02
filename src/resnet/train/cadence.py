"""When a run evaluates and checkpoints: every N iterations or epochs, and by the clock."""

from __future__ import annotations

import time
from dataclasses import dataclass

from resnet.config import CheckpointConfig, EvalConfig


@dataclass(frozen=True)
class Cadence:
    evaluation: EvalConfig
    checkpoint: CheckpointConfig
    steps_per_epoch: int

    def evaluation_due(self, iteration: int, end_of_epoch: bool) -> bool:
        every = self.evaluation
        if every.every_iterations:
            return iteration % every.every_iterations == 0
        return end_of_epoch and (iteration // self.steps_per_epoch) % max(1, every.every_epochs) == 0

    def checkpoint_scheduled(self, iteration: int) -> bool:
        every = self.checkpoint.every_iterations
        return every is not None and every > 0 and iteration % every == 0

    def checkpoint_time_due(self, last_save_time: float) -> bool:
        minutes = self.checkpoint.every_minutes
        return bool(minutes) and time.monotonic() - last_save_time >= minutes * 60
