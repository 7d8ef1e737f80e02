"""Learning-rate schedules as small objects of the iteration: ``lr_at(iteration)``.

They are pure functions of the iteration (plus, for the plateau and the error-threshold warm-up, state driven by
observed errors and saved in checkpoints), so that they can be tested at boundary iterations without training and
resumed exactly. Iteration ``i`` is the ``i``-th update, counted from 0; a run of ``n`` iterations uses 0..n-1.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from typing import Any

from resnet.config import Config
from resnet.errors import ConfigError
from resnet.models.specs import model_depth


class Schedule:
    """Base class: a constant learning rate and no state."""

    def __init__(self, lr: float) -> None:
        self.lr = lr

    def lr_at(self, iteration: int) -> float:
        return self.lr

    def observe_training(self, iteration: int, error_sum: float, count: int) -> None:
        """Training errors (in percent, summed over ``count`` iterations) ending at ``iteration``."""

    def observe_validation(self, iteration: int, error: float) -> None:
        """Validation error (percent) measured after ``iteration``."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved."""


class MultiStepSchedule(Schedule):
    """``lr * gamma**k`` where k milestones are at or before the iteration (the paper's step schedule)."""

    def __init__(self, lr: float, milestones: list[int], gamma: float = 0.1) -> None:
        super().__init__(lr)
        self.milestones = sorted(milestones)
        self.gamma = gamma

    def lr_at(self, iteration: int) -> float:
        return self.lr * self.gamma ** bisect.bisect_right(self.milestones, iteration)


class CosineSchedule(Schedule):
    """Cosine annealing from ``lr`` to ``min_lr`` over ``total`` iterations."""

    def __init__(self, lr: float, total: int, min_lr: float = 0.0) -> None:
        super().__init__(lr)
        self.total = max(1, total)
        self.min_lr = min_lr

    def lr_at(self, iteration: int) -> float:
        return _cosine_between(self.lr, self.min_lr, min(1.0, iteration / self.total))


class OneCycleSchedule(Schedule):
    """Smith's one-cycle: cosine up from ``lr/div_factor`` to ``lr``, then cosine down to ``lr/final_div_factor``."""

    def __init__(
        self, lr: float, total: int, pct_start: float = 0.25, div_factor: float = 25.0, final_div: float = 1e4
    ) -> None:
        super().__init__(lr)
        self.total = max(2, total)
        self.peak = max(1, round(pct_start * self.total))
        self.start_lr = lr / div_factor
        self.end_lr = self.start_lr / final_div

    def lr_at(self, iteration: int) -> float:
        if iteration < self.peak:
            return _cosine_between(self.start_lr, self.lr, iteration / self.peak)
        progress = min(1.0, (iteration - self.peak) / max(1, self.total - 1 - self.peak))
        return _cosine_between(self.lr, self.end_lr, progress)


def _cosine_between(start: float, end: float, progress: float) -> float:
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


class PlateauSchedule(Schedule):
    """Divide the lr by ``1/gamma`` when validation error stops improving (the paper's ImageNet rule)."""

    def __init__(
        self, lr: float, gamma: float = 0.1, patience: int = 5, threshold: float = 0.1, min_lr: float = 0.0
    ) -> None:
        super().__init__(lr)
        self.gamma, self.patience, self.threshold, self.min_lr = gamma, patience, threshold, min_lr
        self.scale = 1.0
        self.best = math.inf
        self.bad_evaluations = 0
        self.reductions: list[int] = []  # iterations after which the lr was divided

    def lr_at(self, iteration: int) -> float:
        return max(self.min_lr, self.lr * self.scale)

    def observe_validation(self, iteration: int, error: float) -> None:
        if error < self.best - self.threshold:
            self.best, self.bad_evaluations = error, 0
            return
        self.best = min(self.best, error)
        self.bad_evaluations += 1
        if self.bad_evaluations > self.patience:
            self.scale *= self.gamma
            self.bad_evaluations = 0
            self.reductions.append(iteration)

    def state_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "best": self.best,
            "bad_evaluations": self.bad_evaluations,
            "reductions": list(self.reductions),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale, self.best = float(state["scale"]), float(state["best"])
        self.bad_evaluations, self.reductions = int(state["bad_evaluations"]), list(state["reductions"])


class LinearWarmup(Schedule):
    """Goyal et al.'s gradual warm-up: ramp linearly from ``start_factor * lr`` to the inner schedule."""

    def __init__(self, inner: Schedule, iterations: int, start_factor: float = 0.1) -> None:
        super().__init__(inner.lr)
        self.inner, self.iterations, self.start_factor = inner, iterations, start_factor

    def lr_at(self, iteration: int) -> float:
        lr = self.inner.lr_at(iteration)
        if iteration >= self.iterations:
            return lr
        return lr * (self.start_factor + (1 - self.start_factor) * iteration / self.iterations)

    def observe_training(self, iteration: int, error_sum: float, count: int) -> None:
        self.inner.observe_training(iteration, error_sum, count)

    def observe_validation(self, iteration: int, error: float) -> None:
        self.inner.observe_validation(iteration, error)

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])


class ErrorThresholdWarmup(Schedule):
    """He et al.'s ResNet-110 warm-up: a small lr until the training error falls below a threshold.

    After the switch the inner schedule's own value is used, so the lr really goes back to 0.1 (a well-known
    reproduction multiplies the warm-up lr by the step factors instead and never returns to 0.1). The decision
    is a state machine driven by observed training errors, saved in checkpoints.
    """

    def __init__(
        self,
        inner: Schedule,
        warmup_lr: float = 0.01,
        threshold: float = 80.0,
        window: int = 50,
        max_iterations: int | None = None,
    ) -> None:
        super().__init__(inner.lr)
        self.inner, self.warmup_lr, self.threshold = inner, warmup_lr, threshold
        self.window, self.max_iterations = max(1, window), max_iterations
        self.recent: deque[tuple[float, int]] = deque()  # (error_sum, count) chunks covering ~window iterations
        self.switched_at: int | None = None  # first iteration that used the inner schedule

    def lr_at(self, iteration: int) -> float:
        if self.switched_at is not None and iteration >= self.switched_at:
            return self.inner.lr_at(iteration)
        if self.max_iterations is not None and iteration >= self.max_iterations:
            return self.inner.lr_at(iteration)
        return self.warmup_lr

    def observe_training(self, iteration: int, error_sum: float, count: int) -> None:
        self.inner.observe_training(iteration, error_sum, count)
        if self.switched_at is not None or count <= 0:
            return
        self.recent.append((error_sum, count))
        while sum(c for _, c in self.recent) - self.recent[0][1] >= self.window:
            self.recent.popleft()
        seen = sum(c for _, c in self.recent)
        if seen >= self.window and sum(e for e, _ in self.recent) / seen < self.threshold:
            self.switched_at = iteration + 1

    def observe_validation(self, iteration: int, error: float) -> None:
        self.inner.observe_validation(iteration, error)

    def state_dict(self) -> dict[str, Any]:
        return {
            "inner": self.inner.state_dict(),
            "recent": [list(chunk) for chunk in self.recent],
            "switched_at": self.switched_at,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])
        self.recent = deque((float(e), int(c)) for e, c in state["recent"])
        self.switched_at = state["switched_at"]


def scaled_lr(config: Config, world_size: int = 1) -> float:
    """The linear scaling rule: lr * effective batch / reference batch (when a reference is set); the effective
    batch of one update is batch_size * world_size * optim.accum_steps."""
    reference = config.optim.reference_batch_size
    if not reference:
        return config.optim.lr
    return config.optim.lr * config.data.batch_size * world_size * config.optim.accum_steps / reference


def describe_lr(config: Config, world_size: int = 1, resumed_at: tuple[int, float] | None = None) -> str:
    """The learning rate a run uses and why, printed at every start (a scaled lr must never be a surprise); for a
    resumed run, ``(iteration, lr)`` first: the rate it continues at, not the schedule's starting one."""
    lr, reference = scaled_lr(config, world_size), config.optim.reference_batch_size
    kind = config.schedule.kind + (" (peak)" if config.schedule.kind == "onecycle" else "")
    now = "" if resumed_at is None else f"{resumed_at[1]:.4g} at iteration {resumed_at[0]}, where the run resumes; "
    start = "" if resumed_at is None else "schedule from "
    if not reference:
        return f"learning rate: {now}{start}{lr:g}, {kind} schedule (the recipe's; not scaled with the batch size)"
    batch = config.data.batch_size * world_size * config.optim.accum_steps
    return (
        f"learning rate: {now}{start}{lr:.4g} = {config.optim.lr:g} x {batch}/{reference}, {kind} schedule (the "
        f"linear scaling rule: batch {batch} per update against the recipe's {reference}; --lr sets it before "
        "scaling)"
    )


def total_iterations(config: Config, steps_per_epoch: int) -> int:
    if config.train.iterations is not None:
        return int(config.train.iterations)
    assert config.train.epochs is not None
    return max(1, round(config.train.epochs * steps_per_epoch))


def milestone_iterations(config: Config, steps_per_epoch: int) -> list[int]:
    """Milestones in iterations, rescaled when the run is shorter or longer than the recipe's."""
    schedule = config.schedule
    total = total_iterations(config, steps_per_epoch)
    if schedule.reference_iterations is not None:
        written_for = schedule.reference_iterations  # milestones are iterations
        per_unit = 1.0
    elif schedule.reference_epochs is not None:
        written_for = round(schedule.reference_epochs * steps_per_epoch)
        per_unit = float(steps_per_epoch)  # milestones are epochs
    else:  # no reference: milestones in the unit of the run's own length
        per_unit = 1.0 if config.train.iterations is not None else float(steps_per_epoch)
        written_for = total
    factor = total / written_for if schedule.rescale_milestones and written_for else 1.0
    return [round(m * per_unit * factor) for m in schedule.milestones]


def build_schedule(config: Config, steps_per_epoch: int, world_size: int = 1) -> Schedule:
    """The schedule a configuration describes, in iterations."""
    spec = config.schedule
    lr = scaled_lr(config, world_size)
    total = total_iterations(config, steps_per_epoch)
    schedule: Schedule
    if spec.kind == "multistep":
        schedule = MultiStepSchedule(lr, milestone_iterations(config, steps_per_epoch), spec.gamma)
    elif spec.kind == "cosine":
        schedule = CosineSchedule(lr, total, spec.min_lr)
    elif spec.kind == "onecycle":
        schedule = OneCycleSchedule(lr, total, spec.pct_start, spec.div_factor, spec.final_div_factor)
    elif spec.kind == "plateau":
        schedule = PlateauSchedule(lr, spec.gamma, spec.patience, spec.threshold, spec.min_lr)
    elif spec.kind == "constant":
        schedule = Schedule(lr)
    else:  # pragma: no cover - the config validates kinds
        raise ConfigError(f"unknown schedule.kind '{spec.kind}'")
    warmup = spec.warmup
    if warmup.kind == "none" or model_depth(config.model.name) < warmup.min_depth:
        return schedule
    if warmup.kind == "linear":
        if warmup.only_when_scaled and lr == config.optim.lr:
            return schedule
        length = warmup.iterations or round(warmup.epochs * steps_per_epoch)
        length = min(length, total // 2)  # a shortened run keeps some time at the full lr
        # Goyal et al. start from the unscaled lr; otherwise from start_factor * lr.
        start = config.optim.lr / lr if warmup.only_when_scaled else warmup.start_factor
        return LinearWarmup(schedule, length, start) if length > 0 else schedule
    return ErrorThresholdWarmup(schedule, warmup.lr, warmup.error_threshold, warmup.window, warmup.max_iterations)
