"""Several nets of an experiment at once: a process each, the CPU cores shared out, each in its own run directory.

Small nets leave cores idle, so an experiment can train ``jobs`` nets side by side (docs/results.md measures when
that is faster). Each process trains an ordinary run with the trainer's exact resume; its output goes to
``<out>/<run>.log``. The processes have a session of their own, so Ctrl-C reaches the experiment only, which then
sends each net one SIGTERM (it checkpoints and stops); a process whose parent dies gets SIGTERM as well (Linux).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue as queue_module
import signal
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from resnet.config import Config
from resnet.errors import ConfigError, ResNetError, TrainingInterrupted


def cpu_cores() -> int:
    """Cores this process may use (the affinity mask, not the machine's count)."""
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_jobs(jobs: str | int, pending: int, on_gpu: bool) -> int:
    """``auto``: on the CPU one net per core (measured faster than one net on all cores, docs/results.md), at
    most as many as are left; on a GPU one at a time. A number is taken as given."""
    if jobs == "auto":
        return 1 if on_gpu else max(1, min(pending, cpu_cores()))
    try:
        count = int(jobs)
    except (TypeError, ValueError):
        raise ConfigError(f"--jobs must be auto or a positive number, got {jobs!r}") from None
    if count < 1:
        raise ConfigError(f"--jobs must be auto or a positive number, got {jobs}")
    return count


def threads_per_job(jobs: int) -> int:
    return max(1, cpu_cores() // jobs)


@dataclass(frozen=True)
class Job:
    name: str
    config: Config
    resume: bool
    log: Path


def _child(config: dict[str, Any], resume: bool, log: str, results: Any) -> None:
    """A net's process: train it with its output in ``log``; report ("ok" | "error" | "stopped", text)."""
    os.setsid()  # no terminal signals: the experiment decides when a net stops
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: SIGTERM when the experiment dies
    with open(log, "a", buffering=1) as stream:
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
        try:
            from resnet.config import config_from_dict
            from resnet.train import train

            train(config_from_dict(config, "the experiment's configuration"), resume=resume)
            results.put(("ok", ""))
        except TrainingInterrupted as stop:
            results.put(("stopped", str(stop)))
        except ResNetError as error:
            results.put(("error", str(error)))
        except BaseException:
            traceback.print_exc()
            results.put(("error", f"crashed; the traceback is in {log}"))


def run_jobs(jobs: Sequence[Job], workers: int, say: Callable[[str], None], after_each: Callable[[], None]) -> None:
    """Train ``jobs`` with at most ``workers`` processes at a time; ``after_each`` runs as each net finishes.

    A net's error stops the others at their next iteration (each checkpoints) and is raised naming that net.
    Ctrl-C or SIGTERM does the same and raises a :class:`TrainingInterrupted` saying how to continue.
    """
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads or CUDA state
    queue = list(jobs)
    running: dict[Any, tuple[Job, Any, Any]] = {}  # sentinel -> (job, process, its result queue)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    failure: str | None = None
    try:
        while queue or running:
            while queue and len(running) < workers:
                job = queue.pop(0)
                say(f"experiment: {'resuming' if job.resume else 'starting'} {job.name} (output in {job.log})")
                results = context.Queue()
                process = context.Process(
                    target=_child, args=(job.config.to_dict(), job.resume, str(job.log), results), name=job.name
                )
                process.start()
                running[process.sentinel] = (job, process, results)
            for sentinel in wait(list(running)):
                job, process, results = running.pop(sentinel)
                process.join()
                try:
                    kind, text = results.get(timeout=10)
                except queue_module.Empty:
                    kind, text = "error", f"died (exit code {process.exitcode}); see {job.log}"
                if kind != "ok":
                    failure = f"{job.name}: {text}"
                    raise ResNetError(failure)
                after_each()
    except (KeyboardInterrupt, ResNetError):
        _stop_all(running)
        if failure is not None:
            raise
        raise TrainingInterrupted(
            "the experiment was interrupted; every running net saved its checkpoint. Run the same "
            "`resnet experiment` command again to continue",
            signal.SIGINT,
        ) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop_all(running: dict[Any, tuple[Job, Any, Any]]) -> None:
    """One SIGTERM to every running net (each checkpoints at its next iteration), then wait for them."""
    for _job, process, _results in running.values():
        with contextlib.suppress(OSError):
            os.kill(process.pid, signal.SIGTERM)
    for _job, process, _results in running.values():
        process.join()
