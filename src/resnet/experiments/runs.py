"""An experiment is a list of ordinary training runs under one folder, run (or continued) one after another.

Each run is a plain ``resnet train`` run directory, so all its artefacts (metrics, curves, checkpoints, summary) are
there. Interrupted at any point, the same call continues: finished runs (``summary.json`` present) are kept, an
unfinished one resumes from its ``last.pt`` with the trainer's exact resume, the rest are started.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet.config import Config, config_from_dict
from resnet.errors import CheckpointError, ConfigError, RunDirError, TrainingInterrupted
from resnet.runs import (
    CONFIG_FILE,
    LAST_CHECKPOINT,
    METRICS_FILE,
    SUMMARY_FILE,
    RunLock,
    load_checkpoint,
    read_config_file,
    read_metrics,
    read_summary,
)

DONE, STARTED, LEFT = "done", "started", "left"


@dataclass(frozen=True)
class PlannedRun:
    """One net of an experiment: a model, a seed, and the run directory it trains in."""

    model: str
    seed: int
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def status(self) -> str:
        """Done only with a valid ``summary.json`` of the checkpoint's iteration (a damaged or stray summary
        resumes the run, which rewrites it)."""
        checkpoint = self.path / LAST_CHECKPOINT
        summary = read_summary(self.path)
        if summary is not None and checkpoint.is_file() and summary.get("iterations") == _iteration_of(checkpoint):
            return DONE
        return STARTED if checkpoint.is_file() else LEFT

    def summary(self) -> dict[str, Any]:
        summary = read_summary(self.path)
        if summary is None:
            raise RunDirError(f"{self.path / SUMMARY_FILE} is missing or damaged; run the experiment again")
        return summary

    def records(self) -> list[dict[str, Any]]:
        return read_metrics(self.path, METRICS_FILE)


def by_model(runs: Sequence[PlannedRun]) -> dict[str, list[PlannedRun]]:
    """The runs grouped by net (its seeds together), in the order the nets first appear."""
    groups: dict[str, list[PlannedRun]] = {}
    for run in runs:
        groups.setdefault(run.model, []).append(run)
    return groups


def plan_runs(out: Path, models: Sequence[str], seeds: Sequence[int]) -> list[PlannedRun]:
    """Seed-major order, so that with several seeds every net has a first result early."""
    return [PlannedRun(model, seed, out / f"{model}-seed{seed}") for seed in seeds for model in models]


@dataclass
class ExperimentRunner:
    """Runs the planned nets in order; ``make_config(run)`` gives each one's configuration."""

    runs: list[PlannedRun]
    make_config: Callable[[PlannedRun], Config]
    say: Callable[[str], None] = print
    train_fn: Callable[..., dict[str, Any]] | None = None  # resnet.train.train; replaceable in tests
    jobs: int = 1  # nets trained at once, each in a process of its own (see resnet.experiments.parallel)

    def run(self) -> list[dict[str, Any]]:
        for run in self.runs:
            _check_matches(run, self.make_config(run))
        pending = [run for run in self.runs if run.status() != DONE]
        reused = [run.name for run in self.runs if run not in pending]
        if reused:
            self.say(
                f"experiment: reusing {len(reused)} finished run(s) of the same configuration, not retrained: "
                f"{', '.join(reused)}"
            )
        for run in pending:
            set_aside_unfinished(run, self.say)
        if self.jobs > 1 and self.train_fn is None:
            from resnet.experiments.parallel import Job, run_jobs

            self.say(self.status_line())
            jobs = [
                Job(run.name, self.make_config(run), run.status() == STARTED, run.path.parent / f"{run.name}.log")
                for run in pending
            ]
            run_jobs(jobs, self.jobs, self.say, lambda: self.say(self.status_line()))
        else:
            from resnet.train import train

            train_fn = self.train_fn or train
            for run in pending:
                self.say(self.status_line(current=run))
                try:
                    train_fn(self.make_config(run), resume=run.status() == STARTED)
                except TrainingInterrupted as stop:  # the net checkpointed; the experiment is what to rerun
                    raise TrainingInterrupted(
                        f"{run.name}: {str(stop).split('; continue with')[0]}; run the same `resnet experiment` "
                        "command again to continue",
                        stop.signum,
                    ) from None
            self.say(self.status_line())
        return [run.summary() for run in self.runs]

    def status_line(self, current: PlannedRun | None = None) -> str:
        done = [r.name for r in self.runs if r.status() == DONE]
        left = [r.name for r in self.runs if r.status() != DONE and r != current]
        parts = [f"done {len(done)}/{len(self.runs)}" + (f" ({', '.join(done)})" if done else "")]
        if current is not None:
            verb = "resuming" if current.status() == STARTED else "starting"
            parts.append(f"{verb} {current.name}")
        if left:
            parts.append(f"left: {', '.join(left)}")
        eta = self.eta_seconds(current)
        if current is not None or left:
            parts.append(f"ETA {_minutes(eta)}" if eta is not None else "ETA known after the first finished run")
        return "experiment: " + "; ".join(parts)

    def eta_seconds(self, current: PlannedRun | None = None) -> float | None:
        """Seconds still to go, from the measured cost of finished runs per multiply-add and iteration."""
        seconds, units = 0.0, 0.0
        for run in self.runs:
            if run.status() == DONE:
                summary = run.summary()
                cost = _cost_units(_model_macs(run.model, self.make_config(run)), summary.get("iterations"))
                if cost:
                    seconds += float(summary.get("wall_time_s") or 0.0)
                    units += cost
        if not units:
            return None
        remaining = 0.0
        for run in self.runs:
            if run.status() == DONE:
                continue
            config = self.make_config(run)
            total = config.train.iterations or 0
            done_iterations = max((r["iteration"] for r in run.records()), default=0)
            remaining += _cost_units(_model_macs(run.model, config), max(total - done_iterations, 0)) or 0.0
        return seconds / units * remaining / max(1, min(self.jobs, len([r for r in self.runs if r.status() != DONE])))


def _check_matches(run: PlannedRun, config: Config) -> None:
    """A run directory left by another setting of the experiment must not be mixed into this one: the whole
    resolved configuration is compared, except what a resumed run may change (``resnet.train.resume``)."""
    saved = read_config_file(run.path)
    if not saved:
        return
    from resnet.train.resume import IGNORED_KEYS, RESUMABLE_KEYS, flatten

    free = set(RESUMABLE_KEYS) - {"train.iterations", "train.epochs", "data.dataset"}  # the length and data count
    theirs = flatten(config_from_dict(saved, f"{run.path / CONFIG_FILE}").to_dict())
    ours = flatten(config.to_dict())
    differ = sorted(
        key for key in ours.keys() | theirs.keys()
        if key not in free and key not in IGNORED_KEYS and ours.get(key) != theirs.get(key)
    )  # fmt: skip
    if differ:
        shown = ", ".join(f"{key} = {theirs.get(key)!r} (asked: {ours.get(key)!r})" for key in differ[:3])
        more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
        raise ConfigError(
            f"'{run.path}' holds a run with {shown}{more}; use another --out, or the settings that run was started with"
        )


def set_aside_unfinished(run: PlannedRun, say: Callable[[str], None]) -> None:
    """A net stopped before its first checkpoint left records that a new start must not append to: its folder is
    moved aside (kept, never deleted) and the net starts cleanly."""
    if run.status() != LEFT or not run.path.is_dir() or not any(run.path.iterdir()):
        return
    lock = RunLock(run.path).acquire()  # a net still training there is not "stopped": refused, never moved
    try:
        if run.status() != LEFT:  # it wrote its first checkpoint meanwhile
            return
        aside = run.path.with_name(f"{run.name}.unfinished-{time.strftime('%Y%m%d-%H%M%S')}")
        run.path.rename(aside)
        lock.moved(aside)
    finally:
        lock.release()
    say(f"experiment: {run.name} stopped before its first checkpoint; its files were moved to {aside}")


EXPERIMENT_LOCK = "experiment.lock"


def lock_experiment(out: Path) -> RunLock:
    """Held for an experiment's lifetime: a second experiment on the same ``--out`` is refused at once, instead of
    taking a running net for an unfinished one."""
    return RunLock(out, file=EXPERIMENT_LOCK, what="experiment", option="--out").acquire()


def _iteration_of(checkpoint: Path) -> int | None:
    try:
        return int(load_checkpoint(checkpoint, verify=False, mmap=True)["iteration"])
    except (CheckpointError, KeyError, TypeError, ValueError):
        return None


def _cost_units(macs: int | None, iterations: int | None) -> float | None:
    return float(macs) * float(iterations) if macs and iterations is not None else None


def _model_macs(model: str, config: Config) -> int | None:
    """Multiply-adds at a fixed 32x32 input: only ratios between nets matter for the ETA."""
    from resnet.models import model_info

    try:
        return int(model_info(model, input_size=(3, 32, 32), **config.model.options)["macs"])
    except Exception:  # an estimate only; a model that cannot be counted leaves the ETA open
        return None


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def hardware() -> str:
    """What the runs ran on, for reports: CPU model and cores, or the GPU, and the torch version."""
    import torch

    if torch.cuda.is_available():
        device = f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    else:
        from resnet.runtime.measured import cpu_model

        device = f"{cpu_model()}, {os.cpu_count()} cores, no GPU"
    return f"{device}; torch {torch.__version__}, Python {platform.python_version()}"
