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
class Budget:
    """How long each net trains: the recipe's schedule shortened to ``iterations``, milestones kept in place."""

    name: str
    iterations: int | None  # None: the recipe's own length (64k iterations for cifar-paper)
    eval_every: int | None  # iterations between evaluations; None: every epoch
    log_every: int  # iterations between points of the dense training-error curve
    description: str

    @property
    def label(self) -> str:
        """The budget as run: ``medium budget``, or ``small budget shortened to 40 iterations``."""
        standard = BUDGETS.get(self.name)
        if standard is None or standard.iterations == self.iterations:
            return f"{self.name} budget"
        return f"{self.name} budget shortened to {self.iterations} iterations"


BUDGETS: dict[str, Budget] = {
    "small": Budget(
        "small",
        iterations=1200,
        eval_every=150,
        log_every=20,
        description="1,200 iterations of the paper's schedule (lr /10 at 600 and 900), evaluated every 150: "
        "the quick version for a CPU (docs/results.md has its timings)",
    ),
    "medium": Budget(
        "medium",
        iterations=6400,
        eval_every=400,
        log_every=20,
        description="6,400 iterations, a tenth of the paper's schedule (lr /10 at 3,200 and 4,800), evaluated "
        "every 400: hours on a CPU (docs/results.md has its timings)",
    ),
    "quarter": Budget(
        "quarter",
        iterations=16000,
        eval_every=1000,
        log_every=20,
        description="16,000 iterations, a quarter of the paper's schedule (lr /10 at 8,000 and 12,000), evaluated "
        "every 1,000: most of a day on a 2-core CPU (docs/results.md has its timings)",
    ),
    "paper": Budget(
        "paper",
        iterations=None,
        eval_every=None,
        log_every=100,
        description="the full schedule of section 4.2 (64k iterations, lr /10 at 32k and 48k), evaluated every "
        "epoch: for a GPU",
    ),
}


def budget_named(name: str, iterations: int | None = None) -> Budget:
    """A named budget, optionally with another length (evaluations keep their number per run)."""
    if name not in BUDGETS:
        raise ConfigError(f"unknown budget '{name}'; choose one of {', '.join(BUDGETS)}")
    budget = BUDGETS[name]
    if iterations is None:
        return budget
    if iterations <= 0:
        raise ConfigError(f"--iterations must be a positive number, got {iterations}")
    evaluations = 8 if budget.eval_every is None else max(1, (budget.iterations or iterations) // budget.eval_every)
    return Budget(
        budget.name,
        iterations=iterations,
        eval_every=max(1, iterations // evaluations),
        log_every=max(1, min(budget.log_every, iterations // 20 or 1)),
        description=f"{budget.name} budget shortened to {iterations} iterations",
    )


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
        device = f"{_cpu_model()}, {os.cpu_count()} cores, no GPU"
    return f"{device}; torch {torch.__version__}, Python {platform.python_version()}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
