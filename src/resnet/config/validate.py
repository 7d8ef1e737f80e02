"""Checks of a configuration that the types alone cannot express, run once before anything is built: every
numeric key against its range (``resnet.config.schema.RANGES``), then the checks across keys."""

from __future__ import annotations

import itertools

from resnet.config.parse import flatten
from resnet.config.schema import RANGES, Config
from resnet.data.paths import name_problem
from resnet.errors import ConfigError


def check_ranges(config: Config) -> None:
    """Every numeric key within its range: one line naming the key, its range and the value given."""
    values = flatten(config.to_dict())
    for key, allowed in RANGES.items():
        value = values[key]
        if value is None or isinstance(value, bool):
            continue
        if not isinstance(value, (int, float)) or not allowed.admits(value):
            raise ConfigError(f"'{key}' must be {allowed.what}, got {value}")


def validate(config: Config) -> None:
    """The ranges, then cross-field checks."""
    if not config.model.name:
        raise ConfigError("no model given: pass --model NAME (see `resnet models`)")
    if not config.data.dataset:
        raise ConfigError("no dataset given: pass --dataset NAME or PATH")
    if config.train.epochs is None and config.train.iterations is None:
        raise ConfigError("the run has no length: set train.epochs or train.iterations (--epochs/--iterations)")
    if config.train.epochs is not None and config.train.iterations is not None:
        raise ConfigError("both train.epochs and train.iterations are set: keep one")
    check_ranges(config)
    for key, value in (("run_dir", config.run_dir), ("data.dataset", config.data.dataset),
                       ("data.data_dir", config.data.data_dir), ("model.init", config.model.init)):  # fmt: skip
        problem = name_problem(value) if isinstance(value, str) else None
        if problem:
            raise ConfigError(f"'{key}' = {value!r} {problem.replace('rename it', 'choose a name')}")
    optim = config.optim
    if len(optim.betas) != 2 or not all(0.0 <= b < 1.0 for b in optim.betas):
        raise ConfigError(f"'optim.betas' must be two numbers in [0, 1), got {optim.betas}")
    _check_milestones(config)


def _check_milestones(config: Config) -> None:
    """Milestones increase, are positive, and lie inside the length they were written for (rescaled with it)."""
    schedule, train = config.schedule, config.train
    milestones = schedule.milestones
    length: float | None
    if any(m <= 0 for m in milestones) or any(b <= a for a, b in itertools.pairwise(milestones)):
        raise ConfigError(f"'schedule.milestones' must be positive and increasing, got {milestones}")
    if schedule.reference_iterations is not None:
        length, unit = schedule.reference_iterations, "iterations"
    elif schedule.reference_epochs is not None:
        length, unit = schedule.reference_epochs, "epochs"
    else:
        length, unit = (train.iterations, "iterations") if train.iterations is not None else (train.epochs, "epochs")
    if schedule.kind == "multistep" and length is not None and milestones and milestones[-1] >= length:
        raise ConfigError(
            f"'schedule.milestones' {milestones} must lie inside the run's {length:g} {unit} they are written for "
            "(the lr would never drop at them); give milestones below that"
        )
