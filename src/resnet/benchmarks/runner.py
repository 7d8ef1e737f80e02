"""The benchmark runner: every speed claim of docs/performance.md, side by side, with a table of ratios last.

    resnet benchmark [--quick] [--data-dir DIR] [--only 1,3]      (in the repository: python benchmarks/run.py ...)

Ours and each baseline are measured in interleaved blocks (ABBA...) after a warm-up, and each reports the median of
its blocks; compile times are printed apart. ``--quick`` takes a few minutes on 2 idle cores (fewer, shorter
blocks); the full run takes much longer and adds torch.compile, ResNet-1202 and more repeats.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import replace

import torch

from resnet.benchmarks import gpu
from resnet.benchmarks.common import Row, environment, print_table
from resnet.benchmarks.options import SECTIONS, add_arguments, sections_help
from resnet.data.config import cpu_cores
from resnet.errors import DataError


def run(args: argparse.Namespace) -> int:
    """Run the chosen sections and print the table; a section's missing data skips it unless it was asked for."""
    # Explicit, because OMP_NUM_THREADS (set by some shells and schedulers) would silently measure one core.
    torch.set_num_threads(args.threads or cpu_cores())
    chosen = set(args.only or SECTIONS)
    started = time.perf_counter()
    print(f"resnet benchmark{' --quick' if args.quick else ''} at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for line in environment():
        print(line)
    cifar = _cifar_found(args.data_dir)
    if args.only is None and cifar is not None:
        print(f"[1] skipped: {cifar}")
        chosen.discard(1)

    rows: list[Row] = []
    model_rate = None
    if 1 in chosen:
        from resnet.benchmarks import end_to_end

        rows += end_to_end.run(args.data_dir, args.quick)
        model_rate = rows[-1].ours
    if 2 in chosen:
        from resnet.benchmarks import steps

        rows += steps.training_steps(args.quick)
        model_rate = model_rate or rows[0].ours
    if 3 in chosen:
        from resnet.benchmarks import inference

        rows += inference.run(args.quick)
    if 4 in chosen:
        from resnet.benchmarks import data_pipeline

        rows += data_pipeline.rows(args.data_dir, args.quick, model_rate)
    if 5 in chosen:
        from resnet.benchmarks import steps

        rows += steps.depth_scaling(args.quick)
    if 6 in chosen:
        plan = gpu.plan_from_args(args)
        if args.only is None and cifar is not None:
            plan = replace(plan, cifar=False)  # the throughput part needs no data
        rows += gpu.run(plan)
    print(f"\nfinished in {time.perf_counter() - started:.0f} s")
    print_table(rows)
    return 0


def _cifar_found(data_dir: str | None) -> str | None:
    """None when cifar10-jpeg is there; else why not, in one line."""
    from resnet.benchmarks.end_to_end import find_cifar10_jpeg

    try:
        find_cifar10_jpeg(data_dir)
    except DataError as error:
        return str(error)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """``python benchmarks/run.py``: the runner without the installed ``resnet`` command."""
    import sys

    from resnet.errors import ResNetError

    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description=(__doc__ or "").splitlines()[0],
        epilog=sections_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except ResNetError as error:
        print(f"benchmarks/run.py: error: {error}", file=sys.stderr)
        return 2
