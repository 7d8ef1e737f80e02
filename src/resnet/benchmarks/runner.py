"""The benchmark runner: every speed claim of docs/performance.md, side by side, with a table of ratios last.

    resnet benchmark [--quick] [--data-dir DIR] [--only 1,3]      (in the repository: python benchmarks/run.py ...)

Ours and each baseline are measured in interleaved blocks (ABBA...) after a warm-up, and each reports the median of
its blocks; compile times are printed apart. ``--quick`` takes a few minutes on 2 idle cores (fewer, shorter
blocks); the full run takes much longer and adds torch.compile, ResNet-1202 and more repeats.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from resnet.config.parse import positive_float, positive_int

if TYPE_CHECKING:
    from resnet.benchmarks.common import Row

# The options and the section list import no torch: `resnet benchmark --help` must not pay torch's import.
SECTIONS: dict[int, str] = {
    1: "ResNet-20 end-to-end training on cifar10-jpeg: `resnet train` vs the common torchvision recipe",
    2: "one training step on a synthetic batch (resnet20, resnet56, resnet18 at 224): ours vs eager fp32 NCHW",
    3: "ResNet-50 inference, batch 32, 224x224: prepare_for_inference vs torchvision eager fp32 NCHW",
    4: "the data pipelines, and the CIFAR pipeline against the model's consumption rate",
    5: "cost against depth: images/s and memory of one step, ResNet-20 -> ResNet-1202",
    6: "GPU (only with CUDA): ResNet-50 training images/s with MFU; CIFAR ResNet-20 time to 91% test accuracy",
}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's


def sections(text: str) -> tuple[int, ...]:
    """``--only 1,3``: known section numbers, in the order given, each once."""
    chosen: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if not part.isdigit() or int(part) not in SECTIONS:
            known = ", ".join(str(n) for n in SECTIONS)
            raise argparse.ArgumentTypeError(f"unknown section {part!r}; the sections are {known}")
        if int(part) not in chosen:
            chosen.append(int(part))
    if not chosen:
        raise argparse.ArgumentTypeError("no section given; e.g. --only 1,3")
    return tuple(chosen)


def compile_modes(text: str) -> tuple[str, ...]:
    modes = tuple(mode.strip() for mode in text.split(",") if mode.strip())
    unknown = [mode for mode in modes if mode not in COMPILE_MODES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown torch.compile mode {unknown[0]!r}; use {', '.join(COMPILE_MODES)}")
    return modes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="fewer, shorter blocks (a few minutes on 2 cores)")
    parser.add_argument(
        "--data-dir", help="folder holding cifar10-jpeg/ and fashion-mnist/ (default: $RESNET_DATA, the cache)"
    )
    parser.add_argument(
        "--only",
        type=sections,
        metavar="N[,N...]",
        help="the sections to run, e.g. 1,3 (default: all; 1 and 6's CIFAR part are skipped without cifar10-jpeg)",
    )
    parser.add_argument(
        "--threads", type=positive_int, help="torch intra-op threads (default: every core this process may use)"
    )
    group = parser.add_argument_group("section 6 (GPU)")
    group.add_argument("--gpu-device", default="cuda", help="the device of section 6 (default: cuda)")
    group.add_argument(
        "--gpu-budget", type=positive_float, default=420.0, help="seconds for all of section 6 (default 420)"
    )
    group.add_argument(
        "--gpu-peak-tflops", type=positive_float, help="the card's dense bf16 peak for MFU (default: by name)"
    )
    group.add_argument("--gpu-target", type=positive_float, default=91.0, help="CIFAR test accuracy to reach, %% (91)")
    group.add_argument("--gpu-epochs", type=positive_int, default=40, help="CIFAR epochs of each side's schedule (40)")
    group.add_argument(
        "--gpu-compile-modes",
        type=compile_modes,
        default=("default", "reduce-overhead"),
        help="torch.compile modes for ResNet-50, comma-separated (max-autotune-no-cudagraphs takes minutes)",
    )


def sections_help() -> str:
    return "sections (numbered as in docs/performance.md):\n" + "\n".join(
        f"  {number}. {text}" for number, text in SECTIONS.items()
    )


def run(args: argparse.Namespace) -> int:
    """Run the chosen sections and print the table; a section's missing data skips it unless it was asked for."""
    import torch

    from resnet.benchmarks.common import environment, print_table
    from resnet.data.config import cpu_cores

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
        from resnet.benchmarks import gpu

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
    from resnet.errors import DataError

    try:
        find_cifar10_jpeg(data_dir)
    except DataError as error:
        return str(error)
    return None
