"""`resnet data`: list the registered datasets and describe one (``info NAME|PATH``)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="datasets: list them, describe one")
    commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    listing = commands.add_parser("list", help="registered dataset names (any image-folder path works too)")
    listing.set_defaults(func=run_list)
    info = commands.add_parser("info", help="location, split sizes, per-class counts, image size, mean/std")
    info.add_argument("dataset", metavar="NAME|PATH", help="registered name or path to an image folder / archive")
    info.add_argument("--data-dir", help="root holding DATA_DIR/<dataset-name>/ (default: $RESNET_DATA, cache)")
    info.add_argument("--no-download", action="store_true", help="fail instead of downloading a missing dataset")
    info.add_argument(
        "--on-bad-image",
        choices=("error", "skip"),
        default="error",
        help="unreadable image: stop with its name (default) or skip it and report a count",
    )
    info.add_argument(
        "--check",
        choices=("auto", "all", "sample"),
        default="auto",
        help="image folders: decode every image (all; default up to 20,000 images) or a sample of 64 per split",
    )
    info.add_argument("--json", action="store_true", help="print the description as JSON")
    info.set_defaults(func=run_info)


def run_list(args: argparse.Namespace) -> int:
    from resnet.data import list_datasets
    from resnet.data.registry import REGISTRY

    for name in list_datasets():
        print(f"{name:14s}  {REGISTRY[name].description}")
    print("(any path to an image folder train/<class>/<img> + val|test/<class>/<img>, or its .tar/.tar.gz)")
    return 0


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


def run_info(args: argparse.Namespace) -> int:
    from resnet.data import dataset_info

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = dataset_info(
            args.dataset,
            data_dir=args.data_dir,
            download=not args.no_download,
            on_bad_image=args.on_bad_image,
            check=args.check,
        )
    if args.json:
        print(json.dumps(info))
    else:
        size = info["image_size"]
        print(f"name:        {info['name']} ({info['description']})")
        print(f"location:    {info['location']}")
        print("samples:     " + ", ".join(f"{k} {v}" for k, v in info["splits"].items()))
        if "default_split" in info:
            split = info["default_split"]
            print(f"             default training split: train {split['train']} / val {split['val']} (seeded)")
        print(f"image size:  {size} x {info['channels']} channel(s)")
        print(f"classes:     {len(info['classes'])}")
        width = max(len(c) for c in info["classes"])
        names = list(info["class_counts"])
        print("  " + "class".ljust(width) + "".join(f"  {n:>7s}" for n in names))
        for i, label in enumerate(info["classes"]):
            print("  " + label.ljust(width) + "".join(f"  {info['class_counts'][n][i]:7d}" for n in names))
        print(f"mean:        {_fmt(info['mean'])}  (per channel, [0, 1] units, {info['stats_from']})")
        print(f"std:         {_fmt(info['std'])}")
        if "images_checked" in info:
            print(f"checked:     {info['images_checked']} image(s) decoded")
        if info.get("skipped"):
            examples = info.get("skipped_examples") or []
            shown = f", e.g. {examples[0]}" if examples else ""
            print(f"skipped:     {info['skipped']} unreadable image(s){shown}")
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    return 0
