"""`resnet benchmark`: measure this machine — ours against the common recipes, interleaved, with a table of ratios."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from resnet.benchmarks.runner import add_arguments, sections_help

    parser = subparsers.add_parser(
        "benchmark",
        help="measure this machine: training, inference and data speed against the common recipes",
        description="Runs the speed claims of docs/performance.md on this machine: each section times ours and a "
        "baseline in interleaved blocks and reports the ratio; `--quick` takes a few minutes on 2 cores.",
        epilog=sections_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run_benchmark)


def run_benchmark(args: argparse.Namespace) -> int:
    from resnet.benchmarks.runner import run

    return run(args)
