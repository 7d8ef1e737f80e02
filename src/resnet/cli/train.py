"""`resnet train`: train a network with a recipe, every field overridable from the command line."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from resnet.config.parse import positive_float, positive_int, workers
from resnet.config.schema import CHOICES
from resnet.errors import ConfigError

DEFAULT_RECIPE = "fast"


def register(subparsers: argparse._SubParsersAction) -> None:
    from resnet.config.recipes import list_recipes

    parser = subparsers.add_parser(
        "train",
        help=f"train a network (recipes: {', '.join(list_recipes())})",
        description="Train a network. Settings come from the recipe, then --set key=value, then the flags below; "
        "the resolved configuration is saved in the run directory (see docs/training.md).",
    )
    parser.add_argument("--model", help="network name (see `resnet models`), e.g. resnet20")
    parser.add_argument("--dataset", help="registered dataset name (fashion-mnist, cifar10, ...) or a path")
    parser.add_argument(
        "--recipe",
        help=f"a recipe of recipes/ ({', '.join(list_recipes())}) or the path to a TOML/YAML file "
        f"(default: {DEFAULT_RECIPE})",
    )
    parser.add_argument("--data-dir", help="where datasets are looked for")
    parser.add_argument("--workers", type=workers, metavar="N", help="DataLoader worker processes (image folders)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=positive_float, help="run length in epochs (shortens/lengthens the recipe)")
    length.add_argument("--iterations", type=positive_int, help="run length in iterations")
    parser.add_argument("--batch-size", type=positive_int, help="images per batch")
    parser.add_argument("--lr", type=positive_float, help="(peak) learning rate")
    parser.add_argument("--opt", choices=CHOICES["optim.name"], help="optimizer (default: the recipe's)")
    parser.add_argument(
        "--accum-steps",
        type=positive_int,
        help="gradient accumulation: one update per N batches (lr scales on N x batch)",
    )
    parser.add_argument(
        "--subset",
        type=positive_int,
        help="train on a seeded subset of N training images (the validation set keeps its size: --set data.val_size=N)",
    )
    parser.add_argument(
        "--on-bad-image",
        choices=CHOICES["data.on_bad_image"],
        help="corrupt images in an image folder: stop naming the file (default), or skip and count them",
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), help="default: auto (GPU if any)")
    parser.add_argument(
        "--amp",
        choices=CHOICES["system.amp"],
        help="autocast (default auto: the faster of fp32 and bf16 (fp16 too on GPUs), measured here for runs "
        "long enough to repay it and cached; shorter runs: bf16 on GPUs and on CPUs with avx512_bf16/AMX)",
    )
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        help="channels-last memory format (default: auto, the faster layout measured with --amp auto)",
    )
    parser.add_argument(
        "--retune",
        action="store_true",
        default=None,
        help="measure the automatic precision, layout and compilation again instead of using the cached decision",
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="torch.compile the training step (default: auto: on GPUs, and in a CPU run of 4000+ iterations when "
        "the compiled step measures faster than the eager one)",
    )
    parser.add_argument("--seed", type=int, help="seed of initialisation and data order")
    parser.add_argument("--run-dir", help="run directory (default: runs/<model>-<dataset>-<timestamp>)")
    parser.add_argument(
        "--init",
        metavar="PATH",
        help="start from these weights: a torchvision .pth, one of our checkpoints or a .safetensors file "
        "(the classifier is replaced when the number of classes differs)",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="yes",
        choices=("yes", "auto"),
        help="continue the run in --run-dir from last.pt; '--resume auto' continues it if last.pt exists and "
        "starts it otherwise (for torchrun --max-restarts and preemptible jobs)",
    )
    parser.add_argument(
        "--sync-bn",
        action=argparse.BooleanOptionalAction,
        help="under torchrun: batch-norm statistics over the global batch (SyncBatchNorm; default: per rank)",
    )
    parser.add_argument(
        "--dist-timeout",
        type=float,
        metavar="SECONDS",
        help="under torchrun: stop with an error when another rank is dead or silent this long (default: 60)",
    )
    parser.add_argument(
        "--progress",
        choices=CHOICES["log.progress"],
        help="progress display (default: a bar on a terminal, log lines otherwise)",
    )
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any configuration key, e.g. --set optim.lr=0.05 (repeatable)",
    )
    parser.set_defaults(func=run)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """--set, then the flags (as --help says: an explicit flag is what was asked last, whatever its place on the
    command line); unknown keys are rejected later."""
    from resnet.config import parse_assignment

    flags: dict[str, Any] = {
        "model.name": args.model,
        "model.init": args.init,
        "data.dataset": args.dataset,
        "data.data_dir": args.data_dir,
        "data.num_workers": args.workers,
        "train.epochs": args.epochs,
        "train.iterations": args.iterations,
        "data.batch_size": args.batch_size,
        "optim.lr": args.lr,
        "optim.name": args.opt,
        "optim.accum_steps": args.accum_steps,
        "data.subset": args.subset,
        "data.on_bad_image": args.on_bad_image,
        "system.device": args.device,
        "system.amp": args.amp,
        "system.channels_last": None if args.channels_last is None else ("on" if args.channels_last else "off"),
        "system.retune": args.retune,
        "system.compile": None if args.compile is None else ("on" if args.compile else "off"),
        "seed": args.seed,
        "run_dir": args.run_dir,
        "log.progress": args.progress,
        "distributed.sync_bn": args.sync_bn,
        "distributed.timeout": args.dist_timeout,
    }
    overrides = dict(parse_assignment(text) for text in args.assignments)
    overrides.update({key: value for key, value in flags.items() if value is not None})
    return overrides


def run(args: argparse.Namespace) -> int:
    from resnet.train import load_config, train

    overrides = overrides_from_args(args)
    if args.resume and not overrides.get("run_dir"):
        raise ConfigError(f"--resume {args.resume} needs --run-dir DIR: the run directory holding last.pt")
    changed = None
    if args.resume == "yes":
        # The saved configuration is authoritative: the flags given (the command the run was started with, say) are
        # accepted where they equal it, and may change only what resume.py allows; --recipe must name the run's own.
        if args.recipe:
            overrides["recipe"] = args.recipe
        config, changed = load_config(None, overrides, check=False), list(overrides)
    else:  # a fresh run, or "auto": the recipe's configuration is used if there is nothing to resume
        config = load_config(args.recipe or DEFAULT_RECIPE, overrides)
    modes: dict[str | None, bool | str] = {None: False, "yes": True, "auto": "auto"}
    resume = modes[args.resume]
    summary = train(config, resume=resume, changed=changed)
    if os.environ.get("RANK", "0") != "0":
        return 0  # rank 0 reports
    test_error = summary.get("test_error")
    shown = f"{test_error:.2f}% (accuracy {100 - test_error:.2f}%)" if test_error is not None else "n/a"
    print(
        f"test error {shown} after {summary['epochs']:g} epochs ({summary['iterations']} iterations, "
        f"{summary['train_time_s']:.0f} s of training)"
    )
    if summary.get("best_val_error") is not None:
        print(f"best validation error {summary['best_val_error']:.2f}% at iteration {summary['best_iteration']}")
    if summary.get("ema_best_val_error") is not None:
        print(
            f"EMA: best validation error {summary['ema_best_val_error']:.2f}% at iteration "
            f"{summary['ema_best_iteration']}; best weights: {summary['best_weights']}"
        )
    if summary.get("averaged_test_error") is not None:
        print(
            f"averaged weights of iterations {summary['averaged_iterations']}: test error "
            f"{summary['averaged_test_error']:.2f}% ({summary['averaged_checkpoint']})"
        )
    print(f"curves:      {summary['curves']}")
    print(
        f"checkpoints: {summary['last_checkpoint']}"
        + (f", {summary['best_checkpoint']}" if summary.get("best_checkpoint") else "")
    )
    print(f"summary:     {Path(summary['run_dir']) / 'summary.json'}")
    return 0
