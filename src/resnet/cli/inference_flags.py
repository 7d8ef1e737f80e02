"""The inference-path flags shared by `resnet eval` and `resnet predict` (not a subcommand)."""

from __future__ import annotations

import argparse
from typing import Any

from resnet.inference import BACKENDS, PRECISIONS


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "inference path", "default: BN folded into the convolutions, then the fastest of eager fp32, eager bf16 "
        "(where the kernels exist) and ONNX Runtime, timed on this machine when the work repays it and cached; "
        "otherwise the cached decision, or the rule below"
    )  # fmt: skip
    group.add_argument(
        "--precision", choices=PRECISIONS, default="auto",
        help="auto (default): measured (see above); unmeasured, bf16 on GPUs and on CPUs with native bf16 "
        "(avx512_bf16/AMX), fp32 elsewhere",
    )  # fmt: skip
    group.add_argument(
        "--backend", choices=BACKENDS, default="auto",
        help="auto (default): measured (see above); unmeasured, onnxruntime for fp32 on the CPU, eager elsewhere; "
        "eager: PyTorch, channels-last; compile: torch.compile with weight freezing (compiles on the first batch); "
        "onnxruntime: ONNX Runtime on the CPU, fp32",
    )  # fmt: skip
    group.add_argument(
        "--no-fast", dest="fast", action="store_false",
        help="run the model as trained (fp32, NCHW, BN unfolded, PyTorch eager): the reference path",
    )  # fmt: skip
    group.add_argument(
        "--retune", action="store_true",
        help="time the automatic precision and backend again instead of using the cached decision",
    )  # fmt: skip


def inference_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"fast": args.fast, "precision": args.precision, "backend": args.backend, "retune": args.retune}
