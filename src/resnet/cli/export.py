"""`resnet export`: a checkpoint as ONNX, TorchScript, safetensors or a torchvision state dict, verified."""

from __future__ import annotations

import argparse
import json

from resnet.export import EXPORTERS, FORMATS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint (onnx, torchscript, safetensors, torchvision), verified against PyTorch",
        description="Export the trained model of a checkpoint. ONNX is checked with onnxruntime and TorchScript "
        "with torch.jit.load against PyTorch: the max abs difference must be under 1e-4 of the outputs' magnitude "
        "(at least 1); both are printed, and a refused export is not left under the output's name.",
    )
    parser.add_argument("--checkpoint", required=True, help="a checkpoint (best.pt / last.pt of a run)")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--output", help="output file (default: next to the checkpoint, e.g. best.onnx)")
    parser.add_argument("--dynamic-batch", action="store_true", help="ONNX: any batch size (default: fixed)")
    parser.add_argument(
        "--fuse-bn", action="store_true", help="fold BN into the convolutions first (onnx, torchscript)"
    )
    parser.add_argument(
        "--exporter",
        choices=EXPORTERS,
        default="legacy",
        help="ONNX exporter (default: legacy, fast; dynamo needs onnxscript: pip install 'resnet[onnx-dynamo]')",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace existing output files (never the checkpoint being exported); default: refuse",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resnet.export import export_checkpoint

    result = export_checkpoint(
        args.checkpoint,
        args.format,
        args.output,
        dynamic_batch=args.dynamic_batch,
        fuse_bn=args.fuse_bn,
        exporter=args.exporter,
        force=args.force,
    )
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"wrote {result['path']}" + (f" and {result['sidecar']}" if "sidecar" in result else ""))
    if args.fuse_bn:
        print(f"batch norms folded into convolutions ({result['batchnorms_left']} left)")
    print(
        f"checked with {result['checked_with']}: max abs difference {result['max_abs_diff']:.2e} vs PyTorch "
        f"(relative to the largest |logit| {result['output_scale']:.3g}: {result['max_rel_diff']:.2e})"
    )
    return 0
