"""Our training step in three variants: channels-last (the default), NCHW, and torch.compile of the model.

    python benchmarks/train_step_variants.py [--threads 2] [--repeats 4]

For the questions the runner's section 2 leaves open: does channels-last pay at every image size on this CPU, and
what would compiling the training step (not the default on the CPU) buy, against how long it takes to compile.
All three use the `fast` recipe's fused SGD and label smoothing, fp32, a fixed synthetic batch; interleaved
blocks (ABC CBA ...), median of the blocks' images/s; warm-up (and compile) time printed apart.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from statistics import median

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # a checkout without `pip install -e .`

from resnet.benchmarks.common import rate_block
from resnet.benchmarks.steps import Variant, build_step
from resnet.runtime.measured import interleaved

CASES = (("resnet20", 32, 128, 6), ("resnet18", 224, 16, 3))  # name, image size, batch, calls per block
VARIANTS = (
    Variant("channels-last (default)", channels_last=True, ours=True),
    Variant("NCHW", ours=True),
    Variant("torch.compile", channels_last=True, compile_mode="default", ours=True),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for name, size, batch, calls in CASES:
        steps = {variant.name: build_step(variant, name, size, batch) for variant in VARIANTS}
        for label, step in steps.items():
            start = time.perf_counter()
            step()
            step()
            print(f"{name} {label}: first two steps {time.perf_counter() - start:.1f} s (compilation included)")
        blocks = {label: rate_block(step, calls, batch) for label, step in steps.items()}
        rates = {label: median(values) for label, values in interleaved(blocks, args.repeats, name).items()}
        base = rates["channels-last (default)"]
        for label, rate in rates.items():
            print(f"{name} {size}x{size} batch {batch} {label}: {rate:.1f} img/s ({rate / base:.2f}x the default)")


if __name__ == "__main__":
    main()
