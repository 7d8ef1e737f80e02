"""`resnet eval`: top-1/top-5 error and loss of a checkpoint (center, 10-crop or multi-scale testing)."""

from __future__ import annotations

import argparse
import json
import sys

from resnet.cli.inference_flags import add_inference_arguments, inference_kwargs
from resnet.config.parse import positive_int, workers
from resnet.data.config import VIEW_ALIASES
from resnet.eval import SPLITS, VIEWS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint: top-1/top-5 error, loss (center, 10-crop, multi-scale)",
        description="Evaluate a checkpoint with the model, classes and preprocessing saved in it. The dataset and "
        "split default to the run's test set.",
    )
    parser.add_argument("--checkpoint", required=True, help="a checkpoint (best.pt / last.pt of a run)")
    parser.add_argument("--dataset", help="registered dataset name or image-folder path (default: the run's)")
    parser.add_argument("--data-dir", help="where datasets are looked for (default: the run's)")
    parser.add_argument("--split", choices=SPLITS, default="test", help="default: test")
    parser.add_argument(
        "--views",
        choices=(*VIEWS, *VIEW_ALIASES),
        default="center",
        help="center: one view; 10crop (or ten-crop): corners + center and flips; multiscale: "
        "fully-convolutional on whole images at several shorter sides, with flips (default: center)",
    )
    parser.add_argument(
        "--scales", type=positive_int, nargs="+", help="shorter sides for multiscale (default: 224 256 384 480 640 "
        "for 224-pixel crops, 32 40 48 for 32-pixel images)"
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, help="images per batch")
    parser.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda, cuda:N, mps")
    parser.add_argument("--workers", type=workers, help="DataLoader workers for image folders")
    parser.add_argument(
        "--json", dest="json_path", metavar="FILE",
        help="also write the results as JSON to FILE; '-': print only the JSON on stdout (the text goes to stderr)",
    )  # fmt: skip
    parser.add_argument("--force", action="store_true", help="let --json replace a checkpoint or a run's file")
    parser.add_argument(
        "--max-images", type=positive_int, metavar="N",
        help="evaluate a seeded subset of N images with the classes in the same proportions (a quick estimate)",
    )  # fmt: skip
    parser.add_argument(
        "--allow-other-classes", action="store_true",
        help="evaluate on data whose class names differ from the checkpoint's (class i scored against output i)",
    )  # fmt: skip
    add_inference_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resnet.eval.run import run_eval

    result = run_eval(
        args.checkpoint,
        dataset=args.dataset,
        split=args.split,
        views=args.views,
        scales=args.scales,
        batch_size=args.batch_size,
        data_dir=args.data_dir,
        device=args.device,
        num_workers=args.workers,
        json_path=None if args.json_path == "-" else args.json_path,
        force=args.force,
        allow_other_classes=args.allow_other_classes,
        max_images=args.max_images,
        **inference_kwargs(args),
    )
    text = sys.stderr if args.json_path == "-" else sys.stdout
    scales = f" at scales {', '.join(map(str, result['scales']))}" if result["scales"] else ""
    print(f"{result['model']} on {result['dataset']} {result['split']} ({result['views']}{scales}):", file=text)
    top5 = "n/a (5 classes or fewer)" if result["top5_error"] is None else f"{result['top5_error']:.2f}%"
    print(f"  top-1 error {result['top1_error']:.2f}%  top-5 error {top5}  loss {result['loss']:.4f}", file=text)
    subset = f" (a seeded, class-stratified subset of --max-images {args.max_images})" if args.max_images else ""
    print(f"  {result['images']} images{subset} from {result['location']}, in {result['seconds']:.1f} s on "
          f"{result['device']}", file=text)  # fmt: skip
    print(f"  inference path: {result['inference']}", file=text)
    for note in result["notes"]:
        print(f"  note: {note}", file=text)
    if args.json_path == "-":
        print(json.dumps(result))
    elif args.json_path:
        print(f"  results: {args.json_path}")
    return 0
