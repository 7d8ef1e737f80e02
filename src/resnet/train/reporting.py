"""What a training run records: evaluation records, the dense training curve, curves.png and summary.json.

:class:`RunReport` is given what it writes to (the run directory, the progress output) and what it describes (the
configuration, the data); the trainer hands it the numbers. It never reads the trainer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from resnet.config import Config
from resnet.data import TrainingData
from resnet.eval import Metrics
from resnet.files import Output, as_output, save_figure
from resnet.runs.run_dir import (
    BEST_CHECKPOINT,
    CURVES_FILE,
    LAST_CHECKPOINT,
    TRAIN_CURVE_FILE,
    RunDir,
    read_metrics,
    versions,
)
from resnet.runtime import Runtime
from resnet.runtime.measured import Decision
from resnet.train.ema import ModelEma
from resnet.train.optim import describe_lr
from resnet.train.progress import Progress
from resnet.train.state import TrainingState, fresh_sums

Evaluate = Callable[[nn.Module, Any], Metrics]  # (model, stream) -> every metric over the stream


def evaluation_record(
    state: TrainingState,
    *,
    lr: float,
    epoch: float,
    forward: nn.Module,
    data: TrainingData,
    evaluate: Evaluate,
    test: bool,
) -> dict[str, Any]:
    """The errors of ``forward`` on the validation (and test) streams, beside the training interval's."""
    interval = state.interval
    seen = max(interval["seen"], 1)
    record: dict[str, Any] = {
        "epoch": epoch,
        "iteration": state.iteration,
        "lr": lr,
        "train_loss": interval["loss"] / seen if interval["seen"] else None,
        "train_error": 100.0 * interval["wrong"] / seen if interval["seen"] else None,
        # unset until scored (no validation set; the test set only at the end under eval.test = "end")
        **dict.fromkeys(("val_error", "val_loss", "test_error", "test_loss", "val_top5_error", "test_top5_error")),
    }
    _score(record, "", forward, evaluate, data, test)
    return record


def _score(
    record: dict[str, Any], prefix: str, forward: nn.Module, evaluate: Evaluate, data: TrainingData, test: bool
) -> None:
    """``{prefix}{val,test}_{error,loss,top5_error}`` of ``forward``: one rule for the model and its EMA."""
    for split, stream in (("val", data.val), ("test", data.test if test else None)):
        if stream is not None:
            metrics = evaluate(forward, stream)
            record[f"{prefix}{split}_error"], record[f"{prefix}{split}_loss"] = metrics.top1_error, metrics.loss
            record[f"{prefix}{split}_top5_error"] = metrics.top5_error


def evaluate_ema(
    record: dict[str, Any], state: TrainingState, ema: ModelEma, evaluate: Evaluate, data: TrainingData, test: bool
) -> bool:
    """Add the EMA's errors to ``record``; True when its validation error is the best so far."""
    _score(record, "ema_", ema.module, evaluate, data, test)
    error = record.get("ema_val_error")
    if error is not None and error < state.ema_best_val_error:
        state.ema_best_val_error, state.ema_best_iteration = error, record["iteration"]
        return True
    return False


def ema_results(records: list[dict[str, Any]], state: TrainingState) -> dict[str, Any]:
    """The EMA's final errors and which weights (raw or EMA) validated best."""
    last = records[-1] if records else {}
    best = next((r for r in records if r["iteration"] == state.ema_best_iteration), {})
    out: dict[str, Any] = {
        "ema_test_error": last.get("ema_test_error"),
        "ema_val_error": last.get("ema_val_error"),
        "ema_best_val_error": state.ema_best_val_error if state.ema_best_iteration is not None else None,
        "ema_best_iteration": state.ema_best_iteration,
        "ema_test_error_at_best_val": best.get("ema_test_error"),
    }
    raw_error = state.best_val_error if state.best_iteration is not None else math.inf
    if state.ema_best_iteration is not None and state.ema_best_val_error < raw_error:
        out["best_weights"] = "ema"
    elif state.best_iteration is not None:
        out["best_weights"] = "model"
    return out


@dataclass
class RunReport:
    """Writes a run's records through its run directory and prints them through its progress output."""

    run_dir: RunDir
    config: Config
    data: TrainingData
    progress: Progress
    is_main: bool = True
    world_size: int = 1

    def start(
        self,
        total: int,
        steps_per_epoch: int,
        runtime: Runtime,
        notes: list[str],
        compile_choice: Decision,
        resumed_from: int | None = None,
        lr_now: float | None = None,
    ) -> None:
        """The first lines of a run: where it resumes, what trains on what, where, in which precision, and any notes
        (the compile choice when the step is compiled, was measured, or could not be for want of a compiler)."""
        if resumed_from is not None:
            self.progress.write(f"resuming {self.run_dir.path} from iteration {resumed_from} of {total}")
        self.progress.write(
            f"training {self.config.model.name} on {self.data.name} ({self.data.num_train} images, "
            f"{steps_per_epoch} iteration{'s' if steps_per_epoch != 1 else ''}/epoch) for {total} iterations on "
            f"{runtime.describe()}; run directory {self.run_dir.path}"
        )
        if reason := getattr(self.data, "pipeline_reason", ""):
            self.progress.write(f"data: {reason}")
        subset, num_val = self.config.data.subset, getattr(self.data, "num_val", 0)
        if subset and num_val > subset:
            self.progress.write(
                f"validation: all {num_val} held-out images at every evaluation (--subset {subset} takes a subset of "
                "the training images only); --set data.val_size=N for fewer"
            )
        self.progress.write(f"precision: {runtime.amp_reason}")
        resumed_at = None if resumed_from is None or lr_now is None else (resumed_from, lr_now)
        self.progress.write(describe_lr(self.config, self.world_size, resumed_at))
        if runtime.compile or compile_choice.rates or "C++" in compile_choice.reason:
            self.progress.write(f"step: {compile_choice.describe()}")
        for note in notes:
            self.progress.write(note)

    def train_curve_point(self, state: TrainingState, lr: float) -> None:
        """A dense running training error for the thin curve of the paper's figures; restarts the sums."""
        seen = max(state.curve["seen"], 1)
        record = {
            "iteration": state.iteration,
            "lr": lr,
            "train_loss": state.curve["loss"] / seen,
            "train_error": 100.0 * state.curve["wrong"] / seen,
        }
        self.run_dir.append_metrics(record, TRAIN_CURVE_FILE)
        scalars = {"running_train_error": record["train_error"], "running_train_loss": record["train_loss"]}
        self.run_dir.log_scalars(scalars, state.iteration)
        state.curve = fresh_sums()

    def evaluation(self, record: dict[str, Any], state: TrainingState, *, wall_time: float) -> None:
        """Complete ``record`` with timing, write and print it; restarts the evaluation interval's sums."""
        interval = state.interval
        record["images_per_sec"] = interval["seen"] / interval["time"] if interval["time"] else None
        record["train_time"] = round(state.elapsed, 3)
        record["wall_time"] = round(wall_time, 3)
        state.interval = fresh_sums()
        self.run_dir.append_metrics(record)
        self.run_dir.log_scalars(record, state.iteration)
        keys = ("train_error", "val_error", "test_error", "ema_val_error", "ema_test_error")
        shown = [f"{k} {record[k]:.2f}%" for k in keys if record.get(k) is not None]
        self.progress.write(f"eval at iteration {state.iteration} (epoch {record['epoch']:g}): " + ", ".join(shown))

    def write_summary(self, summary: dict[str, Any], records: list[dict[str, Any]]) -> None:
        """``summary.json``, then ``curves.png``: a figure that cannot be written (a full disk) is a warning and
        loses nothing else (:func:`resnet.files.save_figure`)."""
        self.run_dir.write_summary(summary)
        if self.is_main:
            plot_run_curves(
                records,
                self.run_dir.file(CURVES_FILE),
                title=f"{self.config.model.name} on {self.data.name}",
                train_curve=read_metrics(self.run_dir.path, TRAIN_CURVE_FILE),
            )

    def summary(
        self,
        records: list[dict[str, Any]],
        state: TrainingState,
        *,
        model: nn.Module,
        runtime: Runtime,
        steps_per_epoch: int,
        wall_time: float,
    ) -> dict[str, Any]:
        """The run's summary (``summary.json`` stores its paths relative to the run directory)."""
        config, data = self.config, self.data
        last = records[-1] if records else {}
        best = next((r for r in records if r["iteration"] == state.best_iteration), {})
        images = state.iteration * config.data.batch_size * config.optim.accum_steps * self.world_size
        return {
            "model": config.model.name,
            "dataset": data.name,
            "recipe": config.recipe,
            "test_error": last.get("test_error"),
            "test_accuracy": None if last.get("test_error") is None else round(100.0 - last["test_error"], 4),
            "test_top5_error": last.get("test_top5_error"),
            "val_error": last.get("val_error"),
            "train_error": last.get("train_error"),
            "best_val_error": state.best_val_error if state.best_iteration is not None else None,
            "best_iteration": state.best_iteration,
            "test_error_at_best_val": best.get("test_error"),
            "iterations": state.iteration,
            "epochs": round(state.iteration / steps_per_epoch, 4),
            "params": sum(p.numel() for p in model.parameters()),
            "macs": _macs(config, data),
            "train_time_s": round(state.elapsed, 2),
            "wall_time_s": round(wall_time, 2),
            "images_per_sec": round(images / state.elapsed, 1) if state.elapsed else None,
            "device": runtime.describe(),
            "world_size": self.world_size,
            "amp": runtime.precision,
            "amp_reason": runtime.amp_reason,
            "seed": config.seed,
            "run_dir": str(self.run_dir.path),
            "curves": str(self.run_dir.file(CURVES_FILE)),
            "last_checkpoint": str(self.run_dir.file(LAST_CHECKPOINT)),
            "best_checkpoint": str(self.run_dir.file(BEST_CHECKPOINT)) if state.best_iteration is not None else None,
            "skipped_images": _skipped_images(data),
            "val_images": getattr(data, "num_val", None),  # what the errors are measured on (their noise)
            "test_images": getattr(data, "num_test", None),
            "versions": versions(),
        }


def _macs(config: Config, data: TrainingData) -> int:
    """Multiply-adds of one forward pass at the training images' size, counted from the model."""
    from resnet.models import model_info

    input_size = (data.in_chans, *data.image_size)
    options = {"in_chans": data.in_chans, "num_classes": data.num_classes, **config.model.options}
    return int(model_info(config.model.name, input_size=input_size, **options)["macs"])


def _skipped_images(data: TrainingData) -> int:
    """Unreadable images skipped under ``--on-bad-image skip`` (when decoding, and by every loader stream)."""
    streams = (data.train, getattr(data, "val", None), data.test)
    return int(getattr(data, "skipped", 0)) + sum(int(getattr(s, "skipped", 0) or 0) for s in streams)


def _series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(r["iteration"], r[key]) for r in records if r.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_run_curves(
    records: Sequence[dict[str, Any]],
    path: str | Path | Output,
    title: str = "",
    train_curve: Sequence[dict[str, Any]] = (),
) -> Path:
    """``curves.png``: error against iterations, thin for training and bold for test, as in the paper's figures;
    headless (no display needed)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=120)
    axes = figure.subplots()
    color = "tab:blue"
    # The dense running training error when it was logged, else the per-evaluation one.
    iterations, train = _series(train_curve if len(train_curve) >= 2 else records, "train_error")
    if iterations:
        axes.plot(iterations, train, color=color, linewidth=0.8, label="train error")
    for key, style, line_color in (("test_error", "-", color), ("val_error", "--", "tab:gray")):
        xs, ys = _series(records, key)
        if xs:
            axes.plot(
                xs,
                ys,
                style,
                color=line_color,
                linewidth=2.2,
                marker="o" if len(xs) < 3 else None,
                label=key.replace("_", " "),
            )
    axes.set_xlabel("iterations")
    axes.set_ylabel("error (%)")
    if title:
        axes.set_title(title)
    axes.grid(True, alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend()
    figure.tight_layout()
    save_figure(figure, path)
    return as_output(path).path
