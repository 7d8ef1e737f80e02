"""Is one net per core faster than one net on all cores? The question behind ``resnet experiment --jobs auto``.

Runs our default CIFAR training step (``resnet.benchmarks.steps.ours_step``: the runtime ``resnet train``
resolves, the recipe's fused SGD) for a fixed time: once as one process using every core, then as one process per
core with one thread each, side by side. Prints images/s of each setting and their ratio (measured in the same
run, so the machine's speed cancels out).

    python benchmarks/experiment_jobs.py [--model resnet20] [--seconds 40]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # a checkout without `pip install -e .`

BATCH = 128


def _worker(model: str, threads: int, seconds: float, results: multiprocessing.Queue) -> None:
    import torch

    from resnet.benchmarks.steps import ours_step

    torch.set_num_threads(threads)
    step = ours_step(model, 32, BATCH)
    for _ in range(3):  # warm-up: oneDNN primitives, allocator
        step()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        done += 1
    results.put(done * BATCH / (time.perf_counter() - start))


def measure(model: str, processes: int, threads: int, seconds: float) -> float:
    """Total images/s of ``processes`` side-by-side training processes with ``threads`` threads each."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_worker, args=(model, threads, seconds, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    rates = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    return sum(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--seconds", type=float, default=40.0)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    one = measure(args.model, 1, cores, args.seconds)
    per_core = measure(args.model, cores, 1, args.seconds)
    print(f"{args.model}, batch {BATCH}, {cores} cores, {args.seconds:g} s each:")
    print(f"  one net on {cores} threads:            {one:8.1f} images/s")
    print(f"  {cores} nets on 1 thread each, together: {per_core:8.1f} images/s")
    print(f"  ratio (per core / all cores):        {per_core / one:8.2f}x")


if __name__ == "__main__":
    main()
