"""`resnet predict`: class probabilities of images with a checkpoint's saved preprocessing."""

from __future__ import annotations

import argparse
import json
import sys

from resnet.cli.inference_flags import add_inference_arguments, inference_kwargs
from resnet.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="classify images (files or directories) with a checkpoint",
        description="Classify images with the model, classes and preprocessing saved in a checkpoint. Unreadable "
        "files are named and skipped; the exit status is 1 if any failed.",
    )
    parser.add_argument("inputs", nargs="+", metavar="IMAGE|DIR", help="image files and/or directories of images")
    parser.add_argument(
        "--checkpoint", required=True, help="a checkpoint (best.pt / last.pt), or exported .safetensors"
    )
    parser.add_argument("--top-k", type=int, default=5, help="classes shown per image (default: 5)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    add_inference_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resnet.inference import Predictor, describe

    if "-" in args.inputs:
        raise ConfigError(
            "resnet predict reads image files and folders, not standard input; save the image to a file and give "
            "its path (or a folder of images)"
        )
    predictor = Predictor(args.checkpoint, args.device, **inference_kwargs(args))
    print(f"resnet predict: inference path: {describe(predictor.choices)}", file=sys.stderr)
    results = predictor(args.inputs, top_k=args.top_k, batch_size=args.batch_size)
    failed = [r for r in results if "error" in r]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            if "error" in result:
                continue
            shown = ", ".join(f"{p['class']} {100 * p['probability']:.1f}%" for p in result["predictions"])
            print(f"{result['path']}: {shown}")
    for result in failed:
        print(f"resnet predict: skipped {result['error']}", file=sys.stderr)
    if failed:
        print(f"resnet predict: {len(failed)} of {len(results)} image(s) could not be read", file=sys.stderr)
    return 1 if failed else 0
