"""`resnet models`: the table of networks with parameters and MACs counted from the models."""

from __future__ import annotations

import argparse
import json

# Which block a CIFAR name uses, and why (resnet.models.specs.default_cifar_block).
BLOCK_NOTES = (
    "CIFAR blocks: resnet/plain{6n+2} use basic blocks (He et al. 2015, Sec. 4.2: 20 ... 1202);",
    "resnet/plain164 and 1001 are the bottleneck nets of He et al. 2016 (depth 9n+2; defaults shortcut B, "
    "stride_on 1x1, as resnet-1k-layers);",
    "any other CIFAR depth: 6n+2 basic, else 9n+2 bottleneck; NAME-basic / NAME-bottleneck choose the block "
    "explicitly (resnet164-basic, resnet56-bottleneck).",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list the networks with their parameters and MACs")
    parser.add_argument("--family", choices=("cifar", "imagenet", "vgg"), help="only this family")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    parser.set_defaults(func=run)


def _human(count: int) -> str:
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if count >= threshold:
            return f"{count / threshold:.2f}{suffix}"
    return str(count)


def run(args: argparse.Namespace) -> int:
    from resnet.models import list_models, model_info

    rows = [model_info(name) for name in list_models(args.family)]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    header = ("name", "family", "block", "depth", "shortcut", "params", "MACs", "input")
    table = [
        (
            row["name"],
            row["family"],
            row["block"],
            str(row["depth"]),
            row.get("shortcut") or "-",
            _human(row["params"]),
            _human(row["macs"]),
            "x".join(str(v) for v in row["input_size"]),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *table]) for i in range(len(header))]
    right_aligned = {3, 5, 6}
    for line in [header, *table]:
        cells = [
            cell.rjust(width) if i in right_aligned else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
    if args.family in (None, "cifar"):
        print()
        for note in BLOCK_NOTES:
            print(note)
    return 0
