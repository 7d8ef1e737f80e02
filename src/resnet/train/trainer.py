"""The training loop: data, model, optimizer and schedule wired together, resumable bit for bit on the CPU."""

from __future__ import annotations

import dataclasses
import functools
import math
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from resnet.config import CheckpointConfig, Config, EvalConfig
from resnet.data import TrainingData, build_data, canonical_dataset
from resnet.errors import CheckpointError, ConfigError, TrainingInterrupted
from resnet.eval import EvaluationStopped, Metrics, evaluate_metrics
from resnet.inference import folded_copy
from resnet.runs import BEST_CHECKPOINT, BEST_EMA_CHECKPOINT, LAST_CHECKPOINT, RunDir, build_meta, default_run_dir
from resnet.runs.checkpoint import capture_rng_state, restore_rng_state, save_atomic
from resnet.runs.run_dir import read_metrics
from resnet.runtime import Runtime, has_cpp_compiler, measured, resolve_runtime
from resnet.train import distributed, optim, resume
from resnet.train.checks import check_finite, check_input_size, check_run, loss_diverged, out_of_memory_hint
from resnet.train.ema import ModelEma
from resnet.train.finetune import build_network
from resnet.train.interrupt import InterruptGuard
from resnet.train.keeping import CheckpointKeeper, averaged_results
from resnet.train.mixing import build_criterion, build_mixer
from resnet.train.progress import Progress
from resnet.train.reporting import Evaluate, RunReport, ema_results, evaluate_ema, evaluation_record
from resnet.train.state import TrainingState
from resnet.train.step import train_step, update_batches


class Callback(Protocol):
    def on_iteration_end(self, trainer: Trainer, iteration: int) -> None: ...  # after each update


@dataclass(frozen=True)
class Cadence:
    """When a run evaluates and checkpoints: every N iterations or epochs, and by the clock."""

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


class Trainer:
    """One training run. ``data`` may be given (any :class:`TrainingData`) instead of built from the config.

    ``__init__`` holds what the run starts with; ``setup()`` sets the rest, declared here, in the order it does.
    """

    run_dir: RunDir  # where the run writes (locked from setup() until run() ends)
    world_note: str | None  # how a resumed run was adapted to another world size
    runtime: Runtime  # device, precision, layout, compile: the flag rule, then the measured choice
    runtime_choice: measured.Decision  # the precision and layout chosen, and the rates they were chosen on
    compile_choice: measured.Decision  # compiled or eager, and why (measured on long CPU runs)
    data: TrainingData
    notes: list[str]  # what the header says about the network (fine-tuning, converted weights)
    steps_per_epoch: int
    total: int  # iterations of the whole run
    model: nn.Module  # on the device, DDP/SyncBN-wrapped under torchrun
    forward: nn.Module  # the model as the step calls it (compiled, DDP)
    eval_forward: nn.Module  # the bare model for evaluation (compiled where training is)
    cadence: Cadence
    schedule: optim.Schedule
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    mixer: Any  # mixup/cutmix on the batch, or None
    ema: ModelEma | None
    keeper: CheckpointKeeper | None  # best-k / averaging of the last checkpoints
    report: RunReport  # set by run(): the header, metrics and summary

    def __init__(
        self,
        config: Config,
        *,
        data: TrainingData | None = None,
        resume: bool | str = False,
        callbacks: Sequence[Callback] = (),
        changed: Sequence[str] | None = None,
    ) -> None:
        """``resume``: True continues ``last.pt``; ``"auto"`` continues it when it exists and starts fresh otherwise.
        ``changed``: the keys the user set when resuming (default: those of ``config`` that differ from defaults)."""
        self.config, self.resume, self.callbacks = config, resume, list(callbacks)
        self.changed, self.given_data = (None if changed is None else list(changed)), data
        self.dist = distributed.SINGLE  # set by run(); see resnet.train.distributed for the rank rules
        self.state = TrainingState()
        self.started = time.monotonic()
        self.records: list[dict[str, Any]] = []
        self.saved_iteration: int | None = None  # iteration held by last.pt (None: none written or resumed)
        self.last_save_time = time.monotonic()
        self.interrupt = InterruptGuard()
        self.progress = Progress("none", 0, 0, 1)  # the bar or log lines, once run() knows the run's length
        self._locked: RunDir | None = None  # the run directory whose lock this trainer holds
        self.evaluation_due = False  # a stop abandoned this iteration's evaluation: --resume does it first

    @property
    def iteration(self) -> int:  # updates applied so far
        return self.state.iteration

    # ---- setup ------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        checkpoint, saved = self._open_run()
        config, ctx = self.config, self.dist
        self.runtime = distributed.place(resolve_runtime(config.system), ctx)
        optim.seed_everything(config.seed)
        built_here = self.given_data is None
        if self.given_data is None:
            self.given_data = distributed.main_first(ctx, self._build_data)
        self.data = self.given_data
        check_input_size(config.model.name, self.data.image_size)
        network, self.notes = build_network(config, self.data, resume=bool(self.resume))
        self.steps_per_epoch = len(self.data.train) // config.optim.accum_steps  # an epoch's whole updates
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"the training set ({self.data.num_train} images) is smaller than one update of "
                f"{config.optim.accum_steps} x {config.data.batch_size}; lower --batch-size or raise --subset"
            )
        if checkpoint is not None and saved is not None:
            resume.check_same_data(checkpoint, self.data)
            done = int(checkpoint["iteration"])
            self.config = config = resume.extend_schedule(saved, config, self.steps_per_epoch, done, self.run_dir.path)
        self.total = optim.total_iterations(config, self.steps_per_epoch)
        self._choose_runtime(network, checkpoint, rebuild_data=built_here)  # timed before SyncBN joins the ranks
        self.model = distributed.prepare_model(network, config, ctx, self.runtime.device).to(self.runtime.device)
        if self.runtime.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.cadence = Cadence(config.eval, config.checkpoint, self.steps_per_epoch)
        self.schedule = optim.build_schedule(config, self.steps_per_epoch, ctx.world_size)
        self.optimizer = optim.build_optimizer(self.model, config, self.schedule.lr_at(0))
        self.scaler = torch.amp.GradScaler(self.runtime.device.type, enabled=self.runtime.needs_grad_scaler)
        distributed.check_supported(config, ctx)
        self.criterion = build_criterion(config, self.data.num_classes)
        self.mixer = build_mixer(config, self.data.num_classes, ctx.rank)
        ema, keep = config.ema, config.checkpoint
        self.ema = ModelEma(self.model, ema.decay, ema.warmup, ema.every_iterations) if ema.enabled else None
        kept = keep.keep_best or keep.average_last
        self.keeper = CheckpointKeeper(self.run_dir.path, keep.keep_best, keep.average_last) if kept else None
        ctx.on_main(self.run_dir.create, config, resume=bool(self.resume))
        if checkpoint is not None:
            self._restore(checkpoint)
        self.forward, self.eval_forward = distributed.wrap_model(self.model, self.runtime, ctx)
        if config.log.tensorboard:
            self.run_dir.open_tensorboard(purge_step=self.iteration + 1 if self.resume else None)

    def _open_run(self) -> tuple[dict[str, Any] | None, Config | None]:
        """The run directory, locked, and for a resumed run its checkpoint and saved configuration (merged into
        ``self.config``); the configuration is checked before anything is read or written."""
        given, ctx = self.config, self.dist
        if self._locked is not None:
            self._locked.release()  # setup() called again (e.g. by run() after a manual setup()): one lock per run
        self.run_dir = distributed.run_dir_for(ctx, given.run_dir or default_run_dir(given))
        if self.resume == "auto":
            self.resume = ctx.on_main(self.run_dir.file(LAST_CHECKPOINT).exists)
        self.world_note = None
        if not self.resume:
            check_run(given)
            given.data.dataset = canonical_dataset(given.data.dataset)
        ctx.on_main(self.run_dir.acquire, resume=bool(self.resume))  # exclusive until run() ends (rank 0)
        self._locked = self.run_dir
        if not self.resume:
            return None, None
        checkpoint, saved, self.config = resume.continue_from(self.run_dir, given, ctx, self.changed)
        self.world_note = distributed.resume_at_world_size(self.config, given, checkpoint, ctx)
        check_run(self.config)  # the merged configuration (a fresh run's was checked before the lock)
        return checkpoint, saved

    def _choose_runtime(self, network: nn.Module, checkpoint: dict[str, Any] | None, rebuild_data: bool) -> None:
        """Precision, layout and compilation: the resumed run's own (exact resume), else the fastest measured on
        rank 0 (or its cached decision, or the flag rule for a run too short to repay a measurement), the same on
        every rank."""
        rule, ctx, system = self.runtime, self.dist, self.config.system
        shape = (getattr(self.data.train, "batch_size", self.config.data.batch_size), self.data.in_chans)
        work = measured.Workload(
            f"{self.config.model.name} {self.config.model.options}",
            (*shape, *self.data.image_size),
            self.data.num_classes,
            self.total - self.iteration,
            ctx.world_size,
        )
        if checkpoint is None:
            decision = ctx.on_main(lambda: measured.decide_training(rule, system, network, work)[1])
        elif saved := checkpoint.get("runtime_choice"):
            decision = measured.Decision.from_dict(saved, source="resumed")
        else:  # a checkpoint from before the choice was saved: the flag rule
            decision = measured.Decision(f"{rule.precision} {measured.layout_name(rule.channels_last)}", "rule")
        self.runtime, self.runtime_choice = measured.apply_training(rule, decision), decision
        saved_compile = checkpoint.get("compile_choice") if checkpoint is not None else None
        compiler_here = self.runtime.device.type != "cpu" or has_cpp_compiler()
        if checkpoint is None:
            self.compile_choice = ctx.on_main(lambda: measured.decide_compile(self.runtime, system, network, work))
        elif saved_compile and system.compile == "auto" and compiler_here:
            self.compile_choice = measured.Decision.from_dict(saved_compile, source="resumed")
        else:  # --compile/--no-compile, a checkpoint from before the choice was saved, or no compiler: the rule
            self.compile_choice = measured.compile_rule(system, self.runtime.device, self.total)
        self.runtime = dataclasses.replace(self.runtime, compile=self.compile_choice.choice == "compiled")
        if rebuild_data and self.runtime.channels_last != rule.channels_last:
            # the streams hand out batches in the chosen layout
            self.data = self.given_data = distributed.main_first(ctx, self._build_data)

    def _build_data(self) -> TrainingData:
        return build_data(
            self.config.data,
            device=self.runtime.device,
            seed=self.config.seed,
            shard=(self.dist.rank, self.dist.world_size),
            channels_last=self.runtime.channels_last,
            in_chans=self.config.model.options.get("in_chans"),
        )

    # ---- checkpoints ------------------------------------------------------------------------------------------
    def _components(self) -> dict[str, Any]:
        """What a checkpoint carries through ``state_dict``/``load_state_dict``, by key: one list for both ways."""
        parts = {"model": self.model, "optimizer": self.optimizer, "schedule": self.schedule}
        parts["grad_scaler"] = self.scaler
        return {**parts, "ema": self.ema} if self.ema is not None else parts

    def state_dict(self) -> dict[str, Any]:
        return {
            **{key: part.state_dict() for key, part in self._components().items()},
            "rng": capture_rng_state(),
            **self.state.to_checkpoint(
                wall_time=self.wall_time(), steps_per_epoch=self.steps_per_epoch, with_ema=self.ema is not None
            ),
            "config": self.config.to_dict(),
            **({"kept": self.keeper.state_dict()} if self.keeper is not None else {}),
            **distributed.checkpoint_fields(self.config, self.dist, self.iteration),
            "meta": build_meta(self.config, self.data),
            "run_id": self.run_dir.run_id,
            "runtime_choice": self.runtime_choice.to_dict(),
            "compile_choice": self.compile_choice.to_dict(),
            "data_fingerprint": getattr(self.data, "fingerprint", ""),
            "evaluation_due": self.evaluation_due,
        }

    def wall_time(self) -> float:
        return self.state.wall_before + time.monotonic() - self.started

    def save(self, name: str = LAST_CHECKPOINT) -> Path:
        path = self.run_dir.file(name)
        state = self.state_dict()
        lr = self.schedule.lr_at(max(0, self.iteration - 1))  # never overwrite a good checkpoint with NaN weights:
        check_finite(state, self.iteration, lr, self.run_dir.file(LAST_CHECKPOINT), self.saved_iteration)
        if self.dist.is_main:
            save_atomic(state, path)
        if name == LAST_CHECKPOINT:
            self.saved_iteration = self.iteration
        self.last_save_time = time.monotonic()
        return path

    def _evaluate(self, model: nn.Module, stream: Any, stop: Callable[[], bool] | None = None) -> Metrics:
        """Each rank scores its shard of ``stream``; the sums are reduced, so the error is the whole set's."""
        return evaluate_metrics(model, stream, self.runtime.autocast, self.dist.reducer_for(stream), stop)

    def _stop_requested(self) -> bool:
        """A signal abandons an evaluation in a single process; under torchrun the ranks agree at the next sync."""
        return self.interrupt.requested is not None and not self.dist.is_distributed

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        if self.ema is not None and "ema" not in checkpoint:
            raise ConfigError("the checkpoint has no EMA weights; resume with ema.enabled = false")
        try:
            for key, part in self._components().items():
                part.load_state_dict(checkpoint[key])
        except (RuntimeError, ValueError, KeyError) as error:
            raise CheckpointError(f"checkpoint in '{self.run_dir.path}' does not fit the model: {error}") from error
        restore_rng_state(checkpoint["rng"])
        self.state = TrainingState.from_checkpoint(checkpoint, with_ema=self.ema is not None)
        self.saved_iteration = self.state.iteration
        self.evaluation_due = bool(checkpoint.get("evaluation_due", False))
        if self.keeper is not None:
            self.keeper.load_state_dict(checkpoint.get("kept", {}), self.iteration)
        self.run_dir.truncate_metrics(self.iteration)
        self.records = self.dist.on_main(read_metrics, self.run_dir.path)

    # ---- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.started = time.monotonic()
        self.dist = distributed.init_distributed(self.config)
        try:
            with distributed.guard(self.dist, self._where, resumes=bool(self.resume)):
                return self._run()
        finally:
            distributed.teardown(self.dist)

    def _where(self) -> str:
        if (kept := self.saved_iteration) is None:
            return f"at iteration {self.iteration}; no checkpoint yet"
        return f"at iteration {self.iteration}; last checkpoint: iteration {kept}, {self.run_dir.file(LAST_CHECKPOINT)}"

    def _run(self) -> dict[str, Any]:
        try:
            self.setup()
            config, runtime = self.config, self.runtime
            self.last_save_time = time.monotonic()
            mode = config.log.progress if self.dist.is_main else "none"
            self.progress = Progress(mode, self.total, self.iteration, config.log.every_iterations)
            main, world = self.dist.is_main, self.dist.world_size
            self.report = RunReport(self.run_dir, config, self.data, self.progress, main, world)
            notes = [*distributed.start_lines(config, self.dist, self.schedule, self.world_note), *self.notes]
            resumed, lr_now = (self.iteration if self.resume else None), self.schedule.lr_at(self.iteration)
            self.report.start(self.total, self.steps_per_epoch, runtime, notes, self.compile_choice, resumed, lr_now)
            with self.interrupt.watch(self):
                with out_of_memory_hint(config.data.batch_size, config.optim.accum_steps, runtime.describe()):
                    if self.evaluation_due:  # abandoned by a stop: done first, as the stopped run would have
                        self._evaluate_or_stop(final=self.iteration >= self.total)
                        self.save()
                    while self.iteration < self.total:
                        self._train_epoch()
                last = self.records[-1] if self.records else {}
                if last.get("iteration") != self.total or last.get("test_error") is None:
                    self._evaluate_or_stop(final=True)
                    self.save()
            return self._finish()
        finally:
            self.progress.close()
            if self._locked is not None:
                self._locked.close()
                self._locked.release()
                self._locked = None

    def _train_epoch(self) -> None:
        """One pass over the training stream from the current iteration, as torchvision's ``train_one_epoch``:
        set the learning rate, one update, then whatever is due after it (:meth:`_after_update`)."""
        epoch, start_batch = divmod(self.iteration, self.steps_per_epoch)
        self.model.train()
        window = _Window(self.runtime.device, self.iteration)
        accum = self.config.optim.accum_steps
        for batches in update_batches(self.data.train, epoch, start_batch, accum):
            lr = self.schedule.lr_at(self.iteration)
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            loss, wrong, batch = train_step(
                self.forward,
                self.criterion,
                batches,
                self.optimizer,
                self.scaler,
                autocast=self.runtime.autocast,
                transform=self.mixer,
                first_index=self.iteration * accum,
                clip_norm=self.config.optim.grad_clip_norm,
                parameters=self.model.parameters(),
            )
            window.add(loss, wrong, batch, self.iteration)
            self.state.iteration += 1
            if self.ema is not None:
                self.ema.maybe_update(self.model, self.iteration)
            if self._after_update(window, epoch, lr):
                break

    def _after_update(self, window: _Window, epoch: int, lr: float) -> bool:
        """The host sync when one is due, then evaluation, checkpoint and stop as due; whether the run is done."""
        end_of_epoch = self.iteration % self.steps_per_epoch == 0
        done = self.iteration >= self.total
        evaluate_now = done or self.cadence.evaluation_due(self.iteration, end_of_epoch)
        scheduled_checkpoint = self.cadence.checkpoint_scheduled(self.iteration)
        scheduled = end_of_epoch or done or evaluate_now or scheduled_checkpoint
        # A signal or the checkpoint clock is seen by one process at a time: under torchrun they act only at a host
        # sync, where every rank learns of them together (a rank stopping alone would strand the others).
        requests = (self.interrupt.requested or 0, int(self.cadence.checkpoint_time_due(self.last_save_time)))
        lone = any(requests) and not self.dist.is_distributed
        if scheduled or lone or (self.iteration - window.start) % self.runtime.sync_every == 0:
            requests = self._sync(window, epoch, lr, requests)
        else:
            requests = (0, 0)
        stop = self.interrupt.agree(requests[0])
        checkpoint_now = end_of_epoch or done or stop or bool(requests[1]) or scheduled_checkpoint
        for callback in self.callbacks:
            callback.on_iteration_end(self, self.iteration)
        if evaluate_now:
            self._evaluate_or_stop(final=done)
        if checkpoint_now:
            self.save()
        if stop:
            raise self._stopped()
        if evaluate_now or checkpoint_now:
            window.tick = time.perf_counter()  # images/s counts training only
        return done

    def _sync(self, window: _Window, epoch: int, lr: float, requests: tuple[int, int]) -> tuple[int, int]:
        """The one host sync per window: NaN check, schedule feedback, progress; returns ``requests`` (a signal
        number or 0, checkpoint by the clock) as agreed by every rank."""
        now = time.perf_counter()
        iterations, seconds = self.iteration - window.start, now - window.tick
        agreed = self.dist.reduce_window(window.sums, window.first_bad, requests)
        requests = (int(agreed[0]), int(agreed[1]))
        loss_sum, wrong, seen = window.sums.tolist()
        bad = int(window.first_bad.item())
        window.restart(self.iteration, now)
        if bad >= 0 or not math.isfinite(loss_sum):
            at = bad if bad >= 0 else self.iteration - 1
            raise loss_diverged(at, lr, self.run_dir.file(LAST_CHECKPOINT), self.saved_iteration)
        error = 100.0 * wrong / max(seen, 1)
        self.schedule.observe_training(self.iteration - 1, error * iterations, iterations)
        self.state.add({"loss": loss_sum, "wrong": wrong, "seen": seen, "iterations": iterations, "time": seconds})
        self.state.elapsed += seconds
        if self.state.curve["iterations"] >= self.config.log.every_iterations:
            self.report.train_curve_point(self.state, lr)
        self.progress.update(self.iteration, epoch + 1, loss_sum / max(seen, 1), error, int(seen), seconds, lr)
        return requests

    def _stopped(self) -> TrainingInterrupted:
        path, where = self.run_dir.file(LAST_CHECKPOINT), self.run_dir.path
        return self.interrupt.error(self.iteration, str(path), shlex.quote(str(where)), self.evaluation_due)

    def _evaluate_or_stop(self, final: bool) -> None:
        """Evaluate and log. A stop request abandons the evaluation at its next batch (Ctrl-C waits seconds, not a
        pass over the evaluation sets): the RNG is put back as it was before it, the checkpoint says the evaluation
        is due, and ``--resume`` does it first, so the resumed run records what an uninterrupted one does."""
        rng, self.evaluation_due = capture_rng_state(), False  # what best.pt and kept snapshots say, if written
        try:
            self._evaluate_and_log(final, functools.partial(self._evaluate, stop=self._stop_requested))
        except EvaluationStopped:
            restore_rng_state(rng)
            self.evaluation_due = True
            self.save()
            raise self._stopped() from None

    def _evaluate_and_log(self, final: bool, evaluate: Evaluate) -> None:
        """Every evaluation pass first (``evaluate`` may abandon them), then what they change: the schedule, the
        records, the best checkpoints."""
        state, data, runtime = self.state, self.data, self.runtime
        # BN folded for evaluation: same outputs, ~15% faster on the CPU (a compiled forward is kept: no recompiles).
        forward = self.eval_forward
        if not runtime.compile:
            forward = folded_copy(self.model, runtime.device, runtime.channels_last)
        test = final or self.config.eval.test == "every"
        record = evaluation_record(
            state,
            lr=self.schedule.lr_at(max(0, self.iteration - 1)),
            epoch=round(self.iteration / self.steps_per_epoch, 4),
            forward=forward,
            data=data,
            evaluate=evaluate,
            test=test,
        )
        ema_improved = self.ema is not None and evaluate_ema(record, state, self.ema, evaluate, data, test)
        if record["val_error"] is not None:
            self.schedule.observe_validation(self.iteration, record["val_error"])
        self.report.evaluation(record, state, wall_time=self.wall_time())
        self.records.append(record)
        if record["val_error"] is not None and record["val_error"] < state.best_val_error:
            state.best_val_error, state.best_iteration = record["val_error"], self.iteration
            self.save(BEST_CHECKPOINT)
        if ema_improved:
            self.save(BEST_EMA_CHECKPOINT)
        if self.keeper is not None:
            self.keeper.after_evaluation(self.iteration, record["val_error"], self.state_dict())

    def _finish(self) -> dict[str, Any]:
        summary = self.report.summary(
            self.records,
            self.state,
            model=self.model,
            runtime=self.runtime,
            steps_per_epoch=self.steps_per_epoch,
            wall_time=self.wall_time(),
        )
        summary["runtime_choice"] = self.runtime_choice.to_dict()  # what ran, and the rates it was chosen on
        summary["compile_choice"] = self.compile_choice.to_dict()
        if self.ema is not None:
            summary.update(ema_results(self.records, self.state))
        if self.keeper is not None:
            summary.update(averaged_results(self.keeper, self.model, self._evaluate, self.data, self.config))
        self.report.write_summary(summary, self.records)
        return summary


class _Window:
    """What the updates since the last host sync add up to, kept on the device (no host sync and no host-to-device
    copy per step): loss sum, wrong predictions and images, and the first iteration whose loss was not finite."""

    def __init__(self, device: torch.device, start: int) -> None:
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)
        self.start, self.tick = start, time.perf_counter()  # the window's first iteration and clock

    def add(self, loss: Tensor, wrong: Tensor, batch: int, iteration: int) -> None:
        bad_now = ~torch.isfinite(loss) & (self.first_bad < 0)
        self.first_bad = torch.where(bad_now, iteration, self.first_bad)
        self.sums[0] += loss * batch
        self.sums[1] += wrong
        self.sums[2] += batch

    def restart(self, iteration: int, now: float) -> None:
        self.sums.zero_()
        self.start, self.tick = iteration, now


def train(
    config: Config,
    *,
    data: TrainingData | None = None,
    resume: bool | str = False,
    callbacks: Sequence[Callback] = (),
    changed: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Train as ``config`` says and return the summary (also written to ``summary.json``)."""
    return Trainer(config, data=data, resume=resume, callbacks=callbacks, changed=changed).run()
