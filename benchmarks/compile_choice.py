"""What `--compile auto` decides on this machine for a long CPU run, and what the measurement costs.

    python benchmarks/compile_choice.py [resnet20 resnet56 ...]

Runs the very call `resnet train` makes (``resnet.runtime.measured.decide_compile``, as with ``--retune``) for a
16,000-iteration run at batch 128 on 32x32 images, fp32 channels-last, 2 threads, with a private choice cache; the
measurement's wall time includes the compilation (cold or warm, as ``TORCHINDUCTOR_CACHE_DIR`` has it).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from resnet.config import SystemConfig
from resnet.models import create_model
from resnet.runtime import measured, resolve_runtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["resnet20"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    system = SystemConfig(device="cpu", amp="off", channels_last="on", retune=True)
    rule = resolve_runtime(system)
    for name in args.models:
        cache = measured.ChoiceCache(Path(tempfile.mkdtemp()) / "choices.json")
        work = measured.Workload(f"{name} {{}}", (128, 3, 32, 32), 10, 16_000)
        start = time.perf_counter()
        decision = measured.decide_compile(rule, system, create_model(name, num_classes=10), work, cache=cache)
        inductor = os.environ.get("TORCHINDUCTOR_CACHE_DIR", "the default inductor cache")
        print(f"{name}: {decision.describe()}; the measurement took {time.perf_counter() - start:.1f} s ({inductor})")


if __name__ == "__main__":
    main()
