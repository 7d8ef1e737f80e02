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
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # a checkout without `pip install -e .`

from resnet.benchmarks.common import interleaved, median, timed_calls

CASES = (("resnet20", 32, 128, 6), ("resnet18", 224, 16, 3))  # name, image size, batch, calls per block


def variant(
    name: str, size: int, batch: int, *, compiled: bool = False, channels_last: bool = True
) -> Callable[[], None]:
    import resnet
    from resnet.train import load_config
    from resnet.train.optim.optimizers import build_optimizer

    config = load_config("fast", {"model.name": name, "system.device": "cpu"}, check=False)
    classes = 10 if size <= 64 else 1000
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = resnet.create_model(name, num_classes=classes).to(memory_format=layout)
    forward = torch.compile(model) if compiled else model
    optimizer = build_optimizer(model, config, lr=0.1)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.optim.label_smoothing)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=generator).contiguous(memory_format=layout)
    labels = torch.randint(0, classes, (batch,), generator=generator)

    def step() -> None:
        loss = criterion(forward(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for name, size, batch, calls in CASES:
        steps = {
            "channels-last (default)": variant(name, size, batch),
            "NCHW": variant(name, size, batch, channels_last=False),
            "torch.compile": variant(name, size, batch, compiled=True),
        }
        for label, step in steps.items():
            start = time.perf_counter()
            step()
            step()
            print(f"{name} {label}: first two steps {time.perf_counter() - start:.1f} s (compilation included)")
        blocks = {label: (lambda s=step, b=batch, c=calls: b / timed_calls(s, c)) for label, step in steps.items()}
        rates = {label: median(values) for label, values in interleaved(blocks, args.repeats, name).items()}
        base = rates["channels-last (default)"]
        for label, rate in rates.items():
            print(f"{name} {size}x{size} batch {batch} {label}: {rate:.1f} img/s ({rate / base:.2f}x the default)")


if __name__ == "__main__":
    main()
