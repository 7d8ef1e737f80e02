"""Is one net per core faster than one net on all cores? The question behind ``resnet experiment --jobs auto``.

Runs the training step that ``--jobs auto`` times (``resnet.experiments.parallel.measure_processes``: fp32
channels-last SGD on a random batch) for a fixed time: once as one process using every core, then as one process per
core with one thread each, side by side. Prints images/s of each setting and their ratio (measured in the same
run, so the machine's speed cancels out).

    python benchmarks/experiment_jobs.py [--model resnet20] [--seconds 40]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # a checkout without `pip install -e .`

BATCH = 128  # what resnet.experiments.parallel.measure_processes trains


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--seconds", type=float, default=40.0)
    args = parser.parse_args()
    from resnet.experiments.parallel import measure_processes as measure

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    one, one_share = measure(args.model, 1, cores, args.seconds)
    per_core, per_core_share = measure(args.model, cores, 1, args.seconds)
    print(f"{args.model}, batch {BATCH}, {cores} cores, {args.seconds:g} s each:")
    print(f"  one net on {cores} threads:            {one:8.1f} images/s (CPU share {one_share:.2f})")
    print(f"  {cores} nets on 1 thread each, together: {per_core:8.1f} images/s (CPU share {per_core_share:.2f})")
    print(f"  ratio (per core / all cores):        {per_core / one:8.2f}x")


if __name__ == "__main__":
    main()
