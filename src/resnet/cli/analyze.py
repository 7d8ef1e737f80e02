"""`resnet analyze`: layer responses (Fig. 7) and per-layer gradient norms, from checkpoints or new nets; runs
side by side (test error against epochs and wall-clock minutes)."""

from __future__ import annotations

import argparse

from resnet.config.parse import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze", help="layer responses (Fig. 7), gradient norms per layer, runs compared (time to accuracy)"
    )
    commands = parser.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    responses = commands.add_parser(
        "responses",
        help="std of every 3x3 layer's response (after BN, before ReLU/addition): responses.png/.json",
    )
    responses.add_argument("--checkpoint", nargs="+", required=True, metavar="PATH", help="last.pt/best.pt files")
    responses.add_argument("--dataset", help="default: the dataset each run trained on")
    responses.add_argument("--data-dir", help="where datasets are looked for")
    responses.add_argument("--split", choices=("test", "val"), default="test", help="default: test")
    responses.add_argument("--max-images", type=int, help="use only the first N images of the split")
    responses.set_defaults(func=run_responses)
    gradients = commands.add_parser(
        "gradients", help="gradient norm of every layer's weights on one batch, log scale: gradients.png/.json"
    )
    gradients.add_argument("--model", nargs="*", default=[], metavar="NAME", help="new nets, at initialisation")
    gradients.add_argument("--checkpoint", nargs="*", default=[], metavar="PATH", help="trained nets")
    gradients.add_argument(
        "--dataset", help="where the batch comes from (default: each run's own data; for new nets cifar10-jpeg)"
    )
    gradients.add_argument("--data-dir", help="where datasets are looked for")
    gradients.add_argument(
        "--batch-size",
        type=positive_int,
        default=128,
        help="images in the one training batch the gradients are taken on",
    )
    gradients.add_argument("--seed", type=int, default=0, help="initialisation and batch seed")
    gradients.set_defaults(func=run_gradients)
    curves = commands.add_parser(
        "curves", help="runs side by side: test error against epochs and wall-clock minutes: curves.png/.json"
    )
    curves.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories of `resnet train`")
    curves.add_argument("--label", action="append", metavar="NAME", help="one per run (default: folder names)")
    curves.add_argument(
        "--target", action="append", type=float, metavar="ACC",
        help="test accuracy (%%) whose time of arrival is reported; repeatable (default: 80, 85, 90)",
    )  # fmt: skip
    curves.add_argument("--title", default="", help="figure title")
    curves.set_defaults(func=run_curves)
    for output in (responses, gradients, curves):
        output.add_argument("--out", default="analysis", help="output folder (default: analysis)")
        output.add_argument("--force", action="store_true", help="replace even a checkpoint's or a run's file in --out")


def run_responses(args: argparse.Namespace) -> int:
    from resnet.analysis import analyze_responses

    results = analyze_responses(
        args.checkpoint, args.out, dataset=args.dataset, data_dir=args.data_dir, split=args.split,
        max_images=args.max_images, force=args.force,
    )  # fmt: skip
    for result in results:
        mean = sum(result.std) / len(result.std)
        print(f"{result.label}: {len(result.std)} layers, mean std {mean:.3f} over {result.images} images")
    print(f"figure: {args.out}/responses.png  numbers: {args.out}/responses.json")
    return 0


def run_gradients(args: argparse.Namespace) -> int:
    from resnet.analysis import analyze_gradients

    results = analyze_gradients(
        args.out, models=args.model, checkpoints=args.checkpoint, dataset=args.dataset, data_dir=args.data_dir,
        batch_size=args.batch_size, seed=args.seed, force=args.force,
    )  # fmt: skip
    for result in results:
        print(f"{result.label}: first layer {result.norms[0]:.3g}, last conv {result.norms[-2]:.3g}, "
              f"classifier {result.norms[-1]:.3g}")  # fmt: skip
    print(f"figure: {args.out}/gradients.png  numbers: {args.out}/gradients.json")
    return 0


def run_curves(args: argparse.Namespace) -> int:
    from resnet.analysis.curves import DEFAULT_TARGETS, compare_runs, format_table

    targets = args.target or DEFAULT_TARGETS
    curves = compare_runs(
        args.run_dirs, args.out, labels=args.label, targets=targets, title=args.title, force=args.force
    )
    print(format_table(curves, targets))
    print(f"figure: {args.out}/curves.png  numbers: {args.out}/curves.json")
    return 0
