"""The training loop: data, model, optimizer and schedule wired together, resumable bit for bit on the CPU."""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from resnet.errors import CheckpointError, ConfigError
from resnet.eval import evaluate
from resnet.train import distributed, divergence, resume
from resnet.train.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_atomic
from resnet.train.checks import check_input_size
from resnet.train.config import Config, config_from_dict, validate
from resnet.train.devices import resolve_runtime
from resnet.train.finetune import prepare_finetuning
from resnet.train.interrupt import InterruptGuard
from resnet.train.meta import build_meta
from resnet.train.modern import TrainingExtras, modern_data_options
from resnet.train.optim import build_optimizer, seed_everything
from resnet.train.progress import Progress
from resnet.train.reporting import RunReporting
from resnet.train.run_dir import (
    LAST_CHECKPOINT,
    default_run_dir,
)
from resnet.train.schedules import Schedule, build_schedule, total_iterations
from resnet.train.step import train_step, update_batches, updates_per_epoch


class Callback(Protocol):
    def on_iteration_end(self, trainer: Trainer, iteration: int) -> None:
        """Called after each update; ``iteration`` updates have been applied."""


class Trainer(RunReporting):
    """One training run. ``data`` may be given (any object with the DataBundle fields) instead of built."""

    def __init__(
        self, config: Config, *, data: Any = None, resume: bool | str = False, callbacks: Sequence[Callback] = ()
    ) -> None:
        """``resume``: True continues ``last.pt``; ``"auto"`` continues it when it exists and starts fresh otherwise."""
        self.config, self.data, self.resume, self.callbacks = config, data, resume, list(callbacks)
        self.dist = distributed.SINGLE  # set by run(); see resnet.train.distributed for the rank rules
        self.iteration = 0
        self.best_val_error = math.inf
        self.best_iteration: int | None = None
        self.elapsed = 0.0  # training seconds, summed over resumed segments
        self.wall_before = 0.0  # wall-clock seconds of earlier segments (evaluations and checkpoints included)
        self.started = time.monotonic()
        self.interval = {"loss": 0.0, "wrong": 0.0, "seen": 0, "iterations": 0, "time": 0.0}
        self.curve = {"loss": 0.0, "wrong": 0.0, "seen": 0, "iterations": 0, "time": 0.0}
        self.records: list[dict[str, Any]] = []
        self.saved_iteration: int | None = None  # iteration held by last.pt (None: none written or resumed)
        self.interrupt = InterruptGuard()

    # ---- setup ------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        config = given = self.config
        ctx = self.dist
        if getattr(self, "run_dir", None) is not None:
            self.run_dir.release()  # setup() called again (e.g. by run() after a manual setup()): one lock per run
        self.run_dir = distributed.run_dir_for(ctx, config.run_dir or default_run_dir(config))
        if self.resume == "auto":
            self.resume = ctx.on_main(self.run_dir.file(LAST_CHECKPOINT).exists)
        checkpoint, saved, self.world_note = None, None, None
        if not self.resume:
            validate(config)
        ctx.on_main(self.run_dir.acquire, resume=bool(self.resume))  # exclusive until run() ends (rank 0)
        if self.resume:
            checkpoint = ctx.on_main(load_checkpoint, self.run_dir.file(LAST_CHECKPOINT))
            ctx.on_main(self.run_dir.check_checkpoint, checkpoint)
            saved = config_from_dict(checkpoint["config"], "the checkpoint's configuration")
            self.config = config = resume.merge_resume_config(saved, config)
            config.run_dir = str(self.run_dir.path)
            self.world_note = distributed.resume_at_world_size(config, given, checkpoint, ctx)
        validate(config)
        self.runtime = distributed.place(resolve_runtime(config.system), ctx)
        seed_everything(config.seed)
        if self.data is None:
            with distributed.main_first(ctx):
                self.data = self._build_data()
        check_input_size(config.model.name, self.data.image_size)
        self.model = distributed.prepare_model(self._build_model(), config, ctx, self.runtime.device)
        self.model = self.model.to(self.runtime.device)
        if self.runtime.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.steps_per_epoch = updates_per_epoch(self.data.train, config.optim.accum_steps)
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"the training set ({self.data.num_train} images) is smaller than one update of "
                f"{config.optim.accum_steps} x {config.data.batch_size}; lower --batch-size or raise --subset"
            )
        if checkpoint is not None and saved is not None:
            resume.check_same_data(checkpoint, self.data, getattr(self.data, "location", "the data directory"))
            done = int(checkpoint["iteration"])
            self.config = config = resume.extend_schedule(saved, config, self.steps_per_epoch, done)
        self.total = total_iterations(config, self.steps_per_epoch)
        self.schedule: Schedule = build_schedule(config, self.steps_per_epoch, ctx.world_size)
        self.optimizer = build_optimizer(self.model, config, self.schedule.lr_at(0))
        self.scaler = torch.amp.GradScaler(self.runtime.device.type, enabled=self.runtime.needs_grad_scaler)
        distributed.check_supported(config, ctx)
        self.extras = TrainingExtras(config, self.model, self.data.num_classes, self.run_dir.path, ctx.rank)
        self.criterion = self.extras.criterion
        ctx.on_main(self.run_dir.create, config, resume=bool(self.resume))
        if checkpoint is not None:
            self._restore(checkpoint)
        self.forward, self.eval_forward = distributed.wrap_model(self.model, self.runtime, ctx)
        if config.log.tensorboard:
            self.run_dir.open_tensorboard(purge_step=self.iteration + 1 if self.resume else None)

    def _build_data(self) -> Any:
        from resnet.data import build_data

        data = self.config.data
        return build_data(
            data.dataset,
            data_dir=data.data_dir,
            batch_size=data.batch_size,
            eval_batch_size=data.eval_batch_size,
            device=str(self.runtime.device),
            val_size=data.val_size,
            subset=data.subset,
            seed=self.config.seed,
            augment=data.augment,
            normalize=data.normalize,
            channels_last=self.runtime.channels_last,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            num_workers=data.num_workers,
            download=data.download,
            eval_view=data.eval_view,
            crop_size=data.crop_size,
            pipeline=data.pipeline,
            on_bad_image=data.on_bad_image,
            **modern_data_options(self.config),
        )

    def _build_model(self) -> nn.Module:
        from resnet.models import create_model

        model = self.config.model
        options = {"in_chans": self.data.in_chans, **model.options}
        network = create_model(model.name, num_classes=self.data.num_classes, **options)
        self.notes = prepare_finetuning(network, self.config, resume=self.resume)
        return network

    # ---- checkpoints ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "iteration": self.iteration,
            "position": {
                "epoch": self.iteration // self.steps_per_epoch,
                "batch": self.iteration % self.steps_per_epoch,
            },
            "best_val_error": self.best_val_error,
            "best_iteration": self.best_iteration,
            "elapsed": self.elapsed,
            "wall_time": self.wall_time(),
            "interval": dict(self.interval),
            "curve": dict(self.curve),
            "config": self.config.to_dict(),
            **self.extras.state_dict(),
            **distributed.checkpoint_fields(self.config, self.dist, self.iteration),
            "meta": build_meta(self.config, self.data),
            "run_id": self.run_dir.run_id,
            "data_fingerprint": getattr(self.data, "fingerprint", ""),
        }

    def wall_time(self) -> float:
        return self.wall_before + time.monotonic() - self.started

    def save(self, name: str = LAST_CHECKPOINT) -> Path:
        path = self.run_dir.file(name)
        state = self.state_dict()
        lr = self.schedule.lr_at(max(0, self.iteration - 1))  # never overwrite a good checkpoint with NaN weights:
        divergence.check_finite(state, self.iteration, lr, self.run_dir.file(LAST_CHECKPOINT), self.saved_iteration)
        if self.dist.is_main:
            save_atomic(state, path)
        if name == LAST_CHECKPOINT:
            self.saved_iteration = self.iteration
        self.last_save_time = time.monotonic()
        return path

    def _save_payload(self, payload: dict[str, Any], name: str) -> Path:
        path = self.run_dir.file(name)
        if self.dist.is_main:
            save_atomic({**payload, "config": self.config.to_dict()}, path)
        return path

    def _evaluate(self, model: nn.Module, stream: Any) -> tuple[float, float]:
        """Each rank scores its shard of ``stream``; the sums are reduced, so the error is the whole set's."""
        return evaluate(model, stream, self.runtime.autocast, self.dist.reducer_for(stream))

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise CheckpointError(f"checkpoint in '{self.run_dir.path}' does not fit the model: {error}") from error
        self.schedule.load_state_dict(checkpoint["schedule"])
        self.scaler.load_state_dict(checkpoint["grad_scaler"])
        restore_rng_state(checkpoint["rng"])
        self.iteration = self.saved_iteration = int(checkpoint["iteration"])
        self.best_val_error = float(checkpoint["best_val_error"])
        self.best_iteration = checkpoint["best_iteration"]
        self.elapsed = float(checkpoint["elapsed"])
        self.wall_before = float(checkpoint["wall_time"])
        self.interval, self.curve = dict(checkpoint["interval"]), dict(checkpoint["curve"])
        self.extras.load_state_dict(checkpoint, self.iteration)
        self.run_dir.truncate_metrics(self.iteration)
        self.records = self.dist.on_main(self.run_dir.read_metrics)

    # ---- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.started = time.monotonic()
        self.dist = distributed.init_distributed(self.config)
        try:
            with distributed.guard(self.dist, self._where):
                return self._run()
        finally:
            distributed.teardown(self.dist)

    def _where(self) -> str:
        run_dir = getattr(self, "run_dir", None)
        last = f"; last checkpoint {run_dir.file(LAST_CHECKPOINT)}" if run_dir is not None else ""
        return f"at iteration {self.iteration}{last}"

    def _run(self) -> dict[str, Any]:
        try:
            self.setup()
            config, runtime = self.config, self.runtime
            self.last_save_time = time.monotonic()
            mode = config.log.progress if self.dist.is_main else "none"
            self.progress = Progress(mode, self.total, self.iteration, config.log.every_iterations)
            self.progress.write(
                f"training {config.model.name} on {self.data.name} ({self.data.num_train} images, "
                f"{self.steps_per_epoch} iterations/epoch) for {self.total} iterations on "
                f"{runtime.describe()}; run directory {self.run_dir.path}"
            )
            self.progress.write(f"precision: {runtime.amp_reason}")
            if self.dist.is_distributed:
                for line in filter(None, (self.world_note, distributed.describe(config, self.dist, self.schedule))):
                    self.progress.write(line)
            for note in self.notes:
                self.progress.write(note)
            with self.interrupt:
                while self.iteration < self.total:
                    self._train_epoch()
                if (
                    not self.records
                    or self.records[-1]["iteration"] != self.total
                    or self.records[-1].get("test_error") is None
                ):
                    self._evaluate_and_log(final=True)
                    self.save()
            return self._finish()
        finally:
            if hasattr(self, "progress"):
                self.progress.close()
            if hasattr(self, "run_dir"):
                self.run_dir.close()
                self.run_dir.release()

    def _train_epoch(self) -> None:
        runtime, model = self.runtime, self.model
        epoch, start_batch = divmod(self.iteration, self.steps_per_epoch)
        model.train()
        window = torch.zeros(3, dtype=torch.float64, device=runtime.device)  # loss sum, wrong, seen
        first_bad = torch.full((), -1, dtype=torch.int64, device=runtime.device)
        window_start, tick = self.iteration, time.perf_counter()
        accum = self.extras.accum_steps
        for batches in update_batches(self.data.train, epoch, start_batch, accum):
            lr = self.schedule.lr_at(self.iteration)
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            detached, wrong, batch = train_step(
                self.forward,
                self.criterion,
                batches,
                self.optimizer,
                self.scaler,
                autocast=runtime.autocast,
                transform=self.extras.mixer,
                first_index=self.iteration * accum,
                clip_norm=self.config.optim.grad_clip_norm,
                parameters=model.parameters(),
            )
            # Device-side bookkeeping only: no host sync and no host-to-device copy per step.
            bad_now = ~torch.isfinite(detached) & (first_bad < 0)
            first_bad = torch.where(bad_now, self.iteration, first_bad)
            window[0] += detached * batch
            window[1] += wrong
            window[2] += batch
            self.iteration += 1
            self.extras.after_update(model, self.iteration)
            end_of_epoch = self.iteration % self.steps_per_epoch == 0
            done = self.iteration >= self.total
            evaluate_now = done or self._evaluation_due(end_of_epoch)
            scheduled = end_of_epoch or done or evaluate_now or self._checkpoint_scheduled()
            # A signal or the checkpoint clock is seen by one process at a time: under torchrun they act only at
            # a host sync, where every rank learns of them together (a rank stopping alone would strand the others).
            requests = (self.interrupt.requested or 0, int(self._checkpoint_time_due()))
            lone = any(requests) and not self.dist.is_distributed
            if scheduled or lone or (self.iteration - window_start) % runtime.sync_every == 0:
                now = time.perf_counter()
                requests = self._sync(window, first_bad, self.iteration - window_start, now - tick, epoch, lr, requests)
                window.zero_()
                window_start, tick = self.iteration, now
            else:
                requests = (0, 0)
            stop = self.interrupt.agree(requests[0])
            checkpoint_now = end_of_epoch or done or stop or bool(requests[1]) or self._checkpoint_scheduled()
            for callback in self.callbacks:
                callback.on_iteration_end(self, self.iteration)
            if evaluate_now:
                self._evaluate_and_log(final=done)
            if checkpoint_now:
                self.save()
            if stop:
                path, where = self.run_dir.file(LAST_CHECKPOINT), self.run_dir.path
                raise self.interrupt.error(self.iteration, str(path), shlex.quote(str(where)))
            if evaluate_now or checkpoint_now:
                tick = time.perf_counter()  # images/s counts training only
            if done:
                break

    def _sync(
        self,
        window: torch.Tensor,
        first_bad: torch.Tensor,
        iterations: int,
        seconds: float,
        epoch: int,
        lr: float,
        requests: tuple[int, int],
    ) -> tuple[int, int]:
        """The one host sync per window: NaN check, schedule feedback, progress; returns ``requests`` (a signal
        number or 0, checkpoint by the clock) as agreed by every rank."""
        requests = self.dist.reduce_window(window, first_bad, requests)
        loss_sum, wrong, seen = window.tolist()
        bad = int(first_bad.item())
        if bad >= 0 or not math.isfinite(loss_sum):
            at = bad if bad >= 0 else self.iteration - 1
            raise divergence.loss_diverged(at, lr, self.run_dir.file(LAST_CHECKPOINT), self.saved_iteration)
        error = 100.0 * wrong / max(seen, 1)
        self.schedule.observe_training(self.iteration - 1, error * iterations, iterations)
        for key, value in (
            ("loss", loss_sum),
            ("wrong", wrong),
            ("seen", seen),
            ("iterations", iterations),
            ("time", seconds),
        ):
            self.interval[key] += value
            self.curve[key] += value
        self.elapsed += seconds
        if self.curve["iterations"] >= self.config.log.every_iterations:
            self._log_train_curve(lr)
        self.progress.update(self.iteration, epoch + 1, loss_sum / max(seen, 1), error, int(seen), seconds, lr)
        return requests

    def _checkpoint_scheduled(self) -> bool:
        every = self.config.checkpoint.every_iterations
        return bool(every) and self.iteration % every == 0

    def _checkpoint_time_due(self) -> bool:
        minutes = self.config.checkpoint.every_minutes
        return bool(minutes) and time.monotonic() - self.last_save_time >= minutes * 60

    def _evaluation_due(self, end_of_epoch: bool) -> bool:
        every = self.config.eval
        if every.every_iterations:
            return self.iteration % every.every_iterations == 0
        return end_of_epoch and (self.iteration // self.steps_per_epoch) % max(1, every.every_epochs) == 0

def train(
    config: Config, *, data: Any = None, resume: bool | str = False, callbacks: Sequence[Callback] = ()
) -> dict[str, Any]:
    """Train as ``config`` says and return the summary (also written to ``summary.json``)."""
    return Trainer(config, data=data, resume=resume, callbacks=callbacks).run()
