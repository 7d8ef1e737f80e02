"""Cross-field checks of a configuration that the types alone cannot express, run before anything is built."""

from __future__ import annotations

import math
from typing import Any

from resnet.config.schema import Config
from resnet.errors import ConfigError


def validate(config: Config) -> None:
    """Cross-field checks that the types alone cannot express."""
    if not config.model.name:
        raise ConfigError("no model given: pass --model NAME (see `resnet models`)")
    if not config.data.dataset:
        raise ConfigError("no dataset given: pass --dataset NAME or PATH")
    if config.train.epochs is None and config.train.iterations is None:
        raise ConfigError("the run has no length: set train.epochs or train.iterations (--epochs/--iterations)")
    if config.train.epochs is not None and config.train.iterations is not None:
        raise ConfigError("both train.epochs and train.iterations are set: keep one")
    for key, value in (
        ("data.batch_size", config.data.batch_size),
        ("optim.lr", config.optim.lr),
        ("train.epochs", config.train.epochs),
        ("train.iterations", config.train.iterations),
    ):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"'{key}' must be a positive number, got {value}")
    for key, value in (("optim.momentum", config.optim.momentum), ("optim.weight_decay", config.optim.weight_decay)):
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"'{key}' must be a finite number >= 0, got {value}")
    for key, value in (("timeout", config.distributed.timeout), ("setup_timeout", config.distributed.setup_timeout)):
        if value <= 0:
            raise ConfigError(f"'distributed.{key}' must be a positive number of seconds, got {value}")
    if not 0 < config.optim.backbone_lr_factor <= 1:
        raise ConfigError(f"'optim.backbone_lr_factor' must be in (0, 1], got {config.optim.backbone_lr_factor}")
    if config.system.threads is not None and config.system.threads < 1:
        raise ConfigError(f"'system.threads' must be a positive number of threads, got {config.system.threads}")
    if config.system.sync_every < 0:
        raise ConfigError(f"'system.sync_every' must be >= 0 (0: the device's default), got {config.system.sync_every}")
    if config.data.subset is not None and config.data.subset <= 0:
        raise ConfigError(f"'data.subset' must be a positive number of images, got {config.data.subset}")
    _validate_training_options(config)


def _probability(key: str, value: float, upper_open: bool = False) -> None:
    if not 0.0 <= value <= 1.0 or (upper_open and value == 1.0):
        raise ConfigError(f"'{key}' must be a probability in [0, 1{')' if upper_open else ']'}, got {value}")


def _validate_training_options(config: Config) -> None:
    """Range checks of the options beyond the paper's recipe (mixing, EMA, accumulation, FixRes, keeping)."""
    optim, mix, ema, data, keep = config.optim, config.mix, config.ema, config.data, config.checkpoint
    key: str
    value: Any
    for key, value in (
        ("optim.accum_steps", optim.accum_steps),
        ("ema.every_iterations", ema.every_iterations),
        ("data.repeats", data.repeats),
        ("data.randaugment_ops", data.randaugment_ops),
    ):
        if value < 1:
            raise ConfigError(f"'{key}' must be at least 1, got {value}")
    for key, value in (("checkpoint.keep_best", keep.keep_best), ("checkpoint.average_last", keep.average_last)):
        if value < 0:
            raise ConfigError(f"'{key}' must be 0 (off) or a number of checkpoints, got {value}")
    for key, value in (("mix.mixup_alpha", mix.mixup_alpha), ("mix.cutmix_alpha", mix.cutmix_alpha)):
        if value < 0:
            raise ConfigError(f"'{key}' must be >= 0 (0 disables), got {value}")
    for key, value in (
        ("mix.prob", mix.prob),
        ("mix.switch_prob", mix.switch_prob),
        ("data.random_erasing", data.random_erasing),
    ):
        _probability(key, value)
    _probability("optim.label_smoothing", optim.label_smoothing, upper_open=True)
    _probability("ema.decay", ema.decay, upper_open=True)
    if optim.bce_target_threshold is not None:
        _probability("optim.bce_target_threshold", optim.bce_target_threshold, upper_open=True)
    if len(optim.betas) != 2 or not all(0.0 <= b < 1.0 for b in optim.betas):
        raise ConfigError(f"'optim.betas' must be two numbers in [0, 1), got {optim.betas}")
    if not 0 <= data.randaugment_magnitude <= 30:
        raise ConfigError(f"'data.randaugment_magnitude' must be in [0, 30], got {data.randaugment_magnitude}")
    sizes = (("data.crop_size", data.crop_size), ("data.eval_crop_size", data.eval_crop_size))
    for key, value in (*sizes, ("data.eval_resize", data.eval_resize)):
        if value is not None and value < 1:
            raise ConfigError(f"'{key}' must be a positive number of pixels, got {value}")
