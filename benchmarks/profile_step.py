"""Where a `resnet train` iteration spends its time: torch.profiler over real trainer iterations.

    python benchmarks/profile_step.py [--data-dir DIR] [--model resnet20] [--steps 5] [--amp auto]

Trains on cifar10-jpeg with the CLI defaults (as benchmarks/run.py section 1 does) and profiles ``--steps``
iterations after two warm-up ones: the top operators by self CPU time, then how the iteration splits into
convolutions, batch norm, the optimizer, the data pipeline and everything else (Python, bookkeeping, syncs).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # a checkout without `pip install -e .`

from resnet.benchmarks.end_to_end import Ours, find_cifar10_jpeg

GROUPS = {  # operator-name fragments -> bucket, first match wins
    "convolution": ("conv", "mkldnn"),
    "batch norm": ("batch_norm",),
    "optimizer": ("sgd", "_foreach", "fused"),
    "data pipeline": ("randperm", "index", "gather", "pad", "flip", "randint", "sub_", "mul_"),
    "elementwise/other ops": ("",),
}


class ProfileWindow:
    """Trainer callback: profile iterations (start, stop]."""

    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop
        self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
        self.wall = 0.0

    def on_iteration_end(self, trainer: Any, iteration: int) -> None:
        if iteration == self.start:
            self.profiler.__enter__()
            self.began = time.perf_counter()
        elif iteration == self.stop:
            self.wall = time.perf_counter() - self.began
            self.profiler.__exit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--amp", default="auto")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(args.threads or cores)
    folder = find_cifar10_jpeg(args.data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        ours = Ours(folder.parent, steps=args.steps, warmup=2, tmp=Path(tmp))
        ours.config.model.name, ours.config.system.amp = args.model, args.amp
        window = ProfileWindow(2, 2 + args.steps)
        from resnet.train.trainer import train

        train(ours.config, data=ours.bundle, callbacks=[window])
    events = window.profiler.key_averages()
    print(f"{args.model}, batch {ours.batch_size}, {torch.get_num_threads()} threads, {ours.device}")
    print(events.table(sort_by="self_cpu_time_total", row_limit=15))
    per_step = window.wall / args.steps * 1e6
    buckets = dict.fromkeys(GROUPS, 0.0)
    for event in events:
        name = event.key.lower()
        if not name.startswith("aten::"):
            continue
        bucket = next(b for b, frags in GROUPS.items() if any(f in name for f in frags))
        buckets[bucket] += event.self_cpu_time_total / args.steps
    ops = sum(buckets.values())
    print(f"per iteration: {per_step / 1e3:.1f} ms wall")
    for bucket, micros in buckets.items():
        print(f"  {bucket:<24} {micros / 1e3:8.1f} ms  {100 * micros / per_step:5.1f}%")
    rest = max(per_step - ops, 0.0)
    print(
        f"  {'outside aten ops':<24} {rest / 1e3:8.1f} ms  {100 * rest / per_step:5.1f}%  (Python, bookkeeping, waits)"
    )


if __name__ == "__main__":
    main()
