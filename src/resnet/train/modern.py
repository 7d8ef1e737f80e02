"""The modern training options wired for the trainer: batch mixing, the loss, the EMA and checkpoint keeping.

The trainer calls :class:`TrainingExtras` at a few points (setup, after an update, after an evaluation, at the
end, and when saving or restoring a checkpoint), so that these options live here and not in the loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from resnet.errors import ConfigError
from resnet.train.ema import ModelEma
from resnet.train.keeping import AVERAGED_CHECKPOINT, CheckpointKeeper
from resnet.train.mixing import BatchMixer, BinaryCrossEntropy, SoftTargetCrossEntropy

if TYPE_CHECKING:
    from resnet.train.config import Config

BEST_EMA_CHECKPOINT = "best_ema.pt"


def _probability(key: str, value: float, upper_open: bool = False) -> None:
    if not 0.0 <= value <= 1.0 or (upper_open and value == 1.0):
        raise ConfigError(f"'{key}' must be a probability in [0, 1{')' if upper_open else ']'}, got {value}")


def validate_modern(config: Config) -> None:
    """Range checks of the modern options (called by ``config.validate``)."""
    optim, mix, ema, data, keep = config.optim, config.mix, config.ema, config.data, config.checkpoint
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
    for key, value in (("data.eval_crop_size", data.eval_crop_size), ("data.eval_resize", data.eval_resize)):
        if value is not None and value < 1:
            raise ConfigError(f"'{key}' must be a positive number of pixels, got {value}")


def modern_data_options(config: Config) -> dict[str, Any]:
    """The ``build_data`` keywords of the modern data options."""
    data = config.data
    return {
        "eval_crop_size": data.eval_crop_size,
        "eval_resize": data.eval_resize,
        "policy": data.policy,
        "randaugment_ops": data.randaugment_ops,
        "randaugment_magnitude": data.randaugment_magnitude,
        "repeats": data.repeats,
    }


def build_criterion(config: Config, num_classes: int) -> nn.Module:
    optim = config.optim
    if optim.loss == "bce":
        return BinaryCrossEntropy(num_classes, optim.label_smoothing, optim.bce_target_threshold)
    return SoftTargetCrossEntropy(optim.label_smoothing)


def build_mixer(config: Config, num_classes: int, rank: int = 0) -> BatchMixer | None:
    """The batch transform, or ``None`` when the options leave batches as they are."""
    mix = config.mix
    mixer = BatchMixer(
        num_classes,
        seed=config.seed,
        mixup_alpha=mix.mixup_alpha,
        cutmix_alpha=mix.cutmix_alpha,
        prob=mix.prob,
        switch_prob=mix.switch_prob,
        label_smoothing=config.optim.label_smoothing,
        erasing=config.data.random_erasing,
        rank=rank,
    )
    return mixer if mixer.active else None


class TrainingExtras:
    """EMA, batch mixing, loss and checkpoint keeping of one run."""

    def __init__(self, config: Config, model: nn.Module, num_classes: int, directory: Path, rank: int = 0) -> None:
        self.config = config
        self.accum_steps = config.optim.accum_steps
        self.criterion = build_criterion(config, num_classes)
        self.mixer = build_mixer(config, num_classes, rank)
        ema = config.ema
        self.ema = ModelEma(model, ema.decay, ema.warmup, ema.every_iterations) if ema.enabled else None
        keep = config.checkpoint
        self.keeper = (
            CheckpointKeeper(directory, keep.keep_best, keep.average_last)
            if keep.keep_best or keep.average_last
            else None
        )
        self.ema_best_val_error = math.inf
        self.ema_best_iteration: int | None = None

    # ---- checkpoints ----
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
            state["ema_best"] = [self.ema_best_val_error, self.ema_best_iteration]
        if self.keeper is not None:
            state["kept"] = self.keeper.state_dict()
        return state

    def load_state_dict(self, checkpoint: dict[str, Any], iteration: int) -> None:
        if self.ema is not None:
            if "ema" not in checkpoint:
                raise ConfigError("the checkpoint has no EMA weights; resume with ema.enabled = false")
            self.ema.load_state_dict(checkpoint["ema"])
            error, best = checkpoint["ema_best"]
            self.ema_best_val_error, self.ema_best_iteration = float(error), best
        if self.keeper is not None:
            self.keeper.load_state_dict(checkpoint.get("kept", {}), iteration)

    # ---- the loop ----
    def after_update(self, model: nn.Module, iteration: int) -> None:
        if self.ema is not None:
            self.ema.maybe_update(model, iteration)

    def evaluate_ema(
        self, record: dict[str, Any], evaluate: Callable[[nn.Module, Any], tuple[float, float]], data: Any, test: bool
    ) -> bool:
        """Add the EMA's errors to ``record``; True when its validation error is the best so far."""
        if self.ema is None:
            return False
        model = self.ema.module
        if data.val is not None:
            record["ema_val_error"], record["ema_val_loss"] = evaluate(model, data.val)
        if test:
            record["ema_test_error"], record["ema_test_loss"] = evaluate(model, data.test)
        error = record.get("ema_val_error")
        if error is not None and error < self.ema_best_val_error:
            self.ema_best_val_error, self.ema_best_iteration = error, record["iteration"]
            return True
        return False

    def after_evaluation(self, iteration: int, val_error: float | None, payload: Callable[[], dict[str, Any]]) -> None:
        if self.keeper is not None:
            self.keeper.after_evaluation(iteration, val_error, payload())

    def summary(
        self,
        records: list[dict[str, Any]],
        raw_best: tuple[float | None, int | None],
        evaluate: Callable[[nn.Module, Any], tuple[float, float]],
        model: nn.Module,
        data: Any,
        save: Callable[[dict[str, Any], str], Path],
    ) -> dict[str, Any]:
        """EMA results, the best of raw and EMA by validation error, and the averaged model's errors."""
        out: dict[str, Any] = {}
        if self.ema is not None:
            last = records[-1] if records else {}
            best = next((r for r in records if r["iteration"] == self.ema_best_iteration), {})
            out.update(
                ema_test_error=last.get("ema_test_error"),
                ema_val_error=last.get("ema_val_error"),
                ema_best_val_error=self.ema_best_val_error if self.ema_best_iteration is not None else None,
                ema_best_iteration=self.ema_best_iteration,
                ema_test_error_at_best_val=best.get("ema_test_error"),
            )
            raw_error = raw_best[0] if raw_best[0] is not None else math.inf
            if self.ema_best_iteration is not None and self.ema_best_val_error < raw_error:
                out["best_weights"] = "ema"
            elif raw_best[1] is not None:
                out["best_weights"] = "model"
        if self.keeper is not None:
            out["kept_best"] = [str(self.keeper.best_file(it)) for _, it in self.keeper.best]
            averaged = self.keeper.average() if self.keeper.average_last else None
            if averaged is not None:
                probe = _copy_with(model, averaged)
                val = evaluate(probe, data.val) if data.val is not None else (None, None)
                test = evaluate(probe, data.test)
                path = save(
                    {
                        "model": averaged,
                        "iteration": self.keeper.snapshots[-1],
                        "averaged_iterations": list(self.keeper.snapshots),
                    },
                    AVERAGED_CHECKPOINT,
                )
                out.update(
                    averaged_checkpoint=str(path),
                    averaged_iterations=list(self.keeper.snapshots),
                    averaged_val_error=val[0],
                    averaged_test_error=test[0],
                )
        return out


def _copy_with(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    import copy

    probe = copy.deepcopy(model)
    probe.load_state_dict(state)
    return probe
