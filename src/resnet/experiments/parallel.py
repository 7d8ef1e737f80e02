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
from resnet.data.config import cpu_cores
from resnet.errors import ConfigError, ResNetError, TrainingInterrupted


def resolve_jobs(
    jobs: str | int, pending: int, on_gpu: bool, iterations: int = 0, say: Callable[[str], None] = print
) -> int:
    """``auto``: on a GPU one net at a time; on the CPU one net per core or one net on all cores, whichever trains
    more images/s here (measured once per machine and cached, for experiments of ``iterations`` long enough to
    repay it; otherwise the cached decision, else one net per core), at most as many as are left. A number is taken
    as given."""
    if jobs == "auto":
        if on_gpu or pending < 2 or cpu_cores() < 2:
            return 1
        decision = jobs_decision(iterations)
        if decision.source != "rule":
            say(f"experiment: --jobs auto: {decision.describe()}")
        return 1 if decision.choice == ONE_NET else max(1, min(pending, cpu_cores()))
    try:
        count = int(jobs)
    except (TypeError, ValueError):
        raise ConfigError(f"--jobs must be auto or a positive number, got {jobs!r}") from None
    if count < 1:
        raise ConfigError(f"--jobs must be auto or a positive number, got {jobs}")
    return count


ONE_NET, NET_PER_CORE = "one net on all cores", "one net per core"
# Experiments shorter than this (all nets' iterations together) take the cached decision or the rule: the
# measurement (two settings, a few seconds each, plus process start-up) would cost more than 5% of them.
JOBS_MEASURE_ITERATIONS = 10_000


def jobs_decision(iterations: int, seconds: float = 6.0, model: str = "resnet20") -> Any:
    """Which of ONE_NET and NET_PER_CORE trains ``model`` faster on this machine (a ``measured.Decision``)."""
    import torch

    from resnet.runtime import measured

    cores = cpu_cores()
    key = measured.cache_key("jobs", torch.device("cpu"), model=model, cores=cores, batch=128)
    cache = measured.ChoiceCache()
    rule = measured.Decision(NET_PER_CORE, "rule", reason="one net per core (the rule; not measured here yet)")
    cached = cache.get(key)
    if cached is not None:
        return cached
    if iterations < JOBS_MEASURE_ITERATIONS:
        return rule
    (one_net, one_share), (per_core, per_core_share) = (
        measure_processes(model, 1, cores, seconds),
        measure_processes(model, cores, 1, seconds),
    )
    rates = {ONE_NET: one_net, NET_PER_CORE: per_core}
    decision = measured.Decision(measured.fastest(rates), "measured", rates)
    return measured.remember(cache, key, decision, min(one_share, per_core_share), "--jobs auto")


def _rate_worker(model: str, threads: int, seconds: float, results: Any) -> None:
    import time

    import torch

    from resnet.models import create_model
    from resnet.runtime.measured import training_step

    torch.set_num_threads(threads)
    step = training_step(create_model(model, num_classes=10), torch.device("cpu"), None, True, (128, 3, 32, 32), 10)
    for _ in range(2):  # warm-up: oneDNN primitives, allocator
        step()
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        step()
        done += 1
    wall = time.perf_counter() - start
    results.put((done * 128 / wall, (time.process_time() - cpu) / wall / threads))


def measure_processes(model: str, processes: int, threads: int, seconds: float) -> tuple[float, float]:
    """Images/s of ``processes`` training processes side by side, ``threads`` threads each, summed; and the
    smallest share of its threads' CPU time that one of them got (``measured.QUIET_SHARE``)."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_rate_worker, args=(model, threads, seconds, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    reports = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    return float(sum(rate for rate, _ in reports)), min(share for _, share in reports)


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
