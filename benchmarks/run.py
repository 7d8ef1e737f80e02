"""The benchmark runner: every speed claim of docs/performance.md, side by side, with a table of ratios last.

    python benchmarks/run.py [--quick] [--data-dir DIR] [--only 1,3]

Sections (numbered as in docs/performance.md):
  1. ResNet-20 end-to-end training on cifar10-jpeg: `resnet train` vs the common torchvision recipe
  2. one training step on a synthetic batch (resnet20, resnet56, resnet18 at 224): ours vs eager fp32 NCHW
  3. ResNet-50 inference, batch 32, 224x224: ``prepare_for_inference`` vs torchvision eager fp32 NCHW
  4. the data pipelines, and the CIFAR pipeline against the model's consumption rate (benchmarks/data_pipeline.py)
  5. cost against depth: images/s and memory of one step, ResNet-20 -> ResNet-1202
  6. GPU (only with CUDA; benchmarks/gpu.py): ResNet-50 training images/s, eager fp32 / eager bf16 / ours, with
     MFU; CIFAR ResNet-20 time to 91% test accuracy, ours vs the common recipe; within --gpu-budget seconds

Ours and each baseline are measured in interleaved blocks (ABBA...) after a warm-up, and each reports the median of
its blocks; compile times are printed apart. ``--quick`` takes a few minutes on 2 idle cores (fewer, shorter
blocks); the full run takes much longer and adds torch.compile, ResNet-1202 and more repeats.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, when run from anywhere

import gpu
from common import Row, environment, print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter blocks (a few minutes on 2 cores)")
    parser.add_argument(
        "--data-dir", help="folder holding cifar10-jpeg/ and fashion-mnist/ (default: the usual lookup)"
    )
    parser.add_argument("--only", help="comma-separated section numbers to run, e.g. 1,3 (default: all)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: every core this process may use)")
    gpu.add_arguments(parser)  # section 6's own options
    args = parser.parse_args()
    # Explicit, because OMP_NUM_THREADS (set by some shells and schedulers) would silently measure one core.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(args.threads or cores)
    sections = {int(s) for s in args.only.split(",")} if args.only else {1, 2, 3, 4, 5, 6}
    started = time.perf_counter()
    print(
        f"benchmarks/run.py{' --quick' if args.quick else ''} at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    for line in environment():
        print(line)

    rows: list[Row] = []
    model_rate = None
    if 1 in sections:
        import end_to_end

        rows += end_to_end.run(args.data_dir, args.quick)
        model_rate = rows[-1].ours
    if 2 in sections:
        import steps

        rows += steps.training_steps(args.quick)
        model_rate = model_rate or rows[0].ours
    if 3 in sections:
        import inference

        rows += inference.run(args.quick)
    if 4 in sections:
        import data_pipeline

        rows += data_pipeline.rows(args.data_dir, args.quick, model_rate)
    if 5 in sections:
        import steps

        rows += steps.depth_scaling(args.quick)
    if 6 in sections:
        rows += gpu.run(gpu.plan_from_args(args))
    print(f"\nfinished in {time.perf_counter() - started:.0f} s")
    print_table(rows)


if __name__ == "__main__":
    main()
