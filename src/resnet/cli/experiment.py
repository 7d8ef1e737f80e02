"""`resnet experiment`: the paper's CIFAR experiments as one command each, resumable, with figures and a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from resnet.errors import ConfigError
from resnet.experiments.budgets import BUDGETS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "experiment", help="reproduce the paper: degradation (Fig. 1, Fig. 6), cifar-table (Table 6)"
    )
    commands = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    degradation = commands.add_parser(
        "degradation",
        help="plain vs residual nets at several depths: fig6.png, fig1.png, report.md",
        description="Trains plainN and resnetN for every depth with the cifar-paper recipe shortened by the budget, "
        "the same seeds and data order; run it again to continue after an interruption.",
    )
    _common(degradation, default_depths=[20, 56], default_out="experiments/degradation")
    degradation.set_defaults(func=run_degradation)
    table = commands.add_parser(
        "cifar-table",
        help="Table 6's analogue: ResNet test error per depth beside the paper's column (and plain twins)",
        description="Trains resnetN (and plainN unless --no-plain) for every depth; resumable like degradation. "
        "Shares finished runs with `experiment degradation` given the same --out and budget.",
    )
    _common(table, default_depths=[20, 32, 44, 56, 110], default_out="experiments/cifar-table")
    table.add_argument("--no-plain", action="store_true", help="train the ResNets only")
    table.set_defaults(func=run_cifar_table)


def _common(parser: argparse.ArgumentParser, default_depths: list[int], default_out: str) -> None:
    parser.add_argument(
        "--dataset", default="cifar10-jpeg", help="cifar10-jpeg (default), cifar10, fashion-mnist or an image folder"
    )
    parser.add_argument("--data-dir", help="where datasets are looked for")
    parser.add_argument("--depths", type=int, nargs="+", default=default_depths, help="CIFAR depths 6n+2")
    parser.add_argument(
        "--budget", choices=tuple(BUDGETS), default="small",
        help="; ".join(f"{name}: {budget.description}" for name, budget in BUDGETS.items())
        + " (docs/results.md has the measured times)",
    )  # fmt: skip
    parser.add_argument("--iterations", type=int, help="another length for every net (milestones keep their place)")
    parser.add_argument(
        "--jobs", default="auto",
        help="nets trained at once, each a process with cores/N threads (default auto: one per core on the CPU, "
        "one on a GPU)",
    )  # fmt: skip
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds (0, 1, ...); mean ± std when > 1")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), help="default: auto (GPU if any)")
    parser.add_argument("--out", default=default_out, help=f"experiment folder (default: {default_out})")
    parser.add_argument(
        "--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
        help="any configuration key for every net, e.g. --set system.threads=2 (repeatable)",
    )  # fmt: skip


def _settings(args: argparse.Namespace):  # -> ExperimentSettings (imported lazily: the CLI starts fast)
    from resnet.config import parse_assignment
    from resnet.experiments import ExperimentSettings, budget_named

    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {args.seeds}")
    overrides = dict(parse_assignment(text) for text in args.assignments)
    return ExperimentSettings(
        out=Path(args.out).resolve(),
        depths=tuple(args.depths),
        dataset=args.dataset,
        data_dir=args.data_dir,
        budget=budget_named(args.budget, args.iterations),
        seeds=tuple(range(args.seeds)),
        device=args.device,
        overrides=overrides,
        jobs=args.jobs,
    )


def run_degradation(args: argparse.Namespace) -> int:
    from resnet.experiments import run_degradation as run

    run(_settings(args))
    return 0


def run_cifar_table(args: argparse.Namespace) -> int:
    from resnet.experiments import run_cifar_table as run

    run(_settings(args), with_plain=not args.no_plain)
    return 0
