"""Section 6, part 1: training images/s of one model on one device, eager fp32 / eager bf16 / ours, with MFU.

Every variant trains the same architecture on the same synthetic batch, built by ``steps.build_step``. The
baselines are the plain loop (eager, NCHW, ``torch.optim.SGD`` with its defaults); ours is the trainer's own update
(``resnet.train.step.train_step``) with bf16 autocast, channels-last and the `fast` recipe's fused SGD, eager (what
`resnet train` runs on a GPU by default) and compiled in each requested ``torch.compile`` mode
(``reduce-overhead`` adds CUDA graphs). Each variant's first steps (compilation, cuDNN autotuning) are timed apart;
then all are timed in interleaved blocks, as many rounds as the deadline allows. Nothing here is CUDA-specific: the
CPU test runs it with a tiny model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import median

import torch

from resnet.benchmarks.steps import BASELINE, Variant, build_step
from resnet.runtime.measured import interleaved, throughput_block


def standard_variants(compile_modes: tuple[str, ...]) -> list[Variant]:
    """The baselines, ours eager, then ours compiled in each mode (cheapest first, so a short budget keeps them)."""

    def ours(name: str, mode: str | None = None) -> Variant:
        return Variant(name, bf16=True, channels_last=True, compile_mode=mode, ours=True)

    compiled = [ours(f"ours compiled ({mode})", mode) for mode in compile_modes]
    return [
        BASELINE,
        Variant("eager bf16 autocast NCHW", bf16=True),
        ours("ours eager (resnet train's GPU default)"),
        *compiled,
    ]


@dataclass
class Measured:
    variant: Variant
    first_s: float  # the first step: compilation, cuDNN autotuning, allocator warm-up
    peak_mib: float | None  # device memory high-water mark of its warm-up (CUDA only)
    rates: list[float] = field(default_factory=list)  # images/s, one per block

    @property
    def rate(self) -> float | None:
        return median(self.rates) if self.rates else None


def measure(
    variants: list[Variant],
    *,
    model_name: str,
    image_size: int,
    batch: int,
    num_classes: int,
    device: torch.device,
    steps: int,
    warmup: int,
    repeats: int,
    deadline: float,
    compile_estimate_s: float,
    backend: str = "inductor",
) -> tuple[list[Measured], dict[str, str]]:
    """Build and warm up each variant while the deadline allows, then time them in interleaved blocks.

    Returns the measured variants and, for each variant not measured, why. A compiled variant starts only when
    ``compile_estimate_s`` (or the longest compilation seen so far, if longer) is left before ``deadline``.
    """
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    measured: list[Measured] = []
    skipped: dict[str, str] = {}
    steps_of: dict[str, Callable[[], None]] = {}
    longest_compile = compile_estimate_s
    for variant in variants:
        left = deadline - time.perf_counter()
        need = longest_compile if variant.compile_mode is not None else 0.0
        if left <= need:
            skipped[variant.name] = f"skipped: ~{need:.0f} s needed, {max(left, 0):.0f} s left of its share"
            continue
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        try:
            step = build_step(variant, model_name, image_size, batch, num_classes, device, backend)
            step()
            sync()
            first_s = time.perf_counter() - start
            for _ in range(warmup):
                step()
            sync()
        except Exception as error:  # a variant that fails (a compiler error, memory) must not lose the others
            first = (str(error).strip().splitlines() or [""])[0][:160]
            skipped[variant.name] = f"failed after {time.perf_counter() - start:.0f} s: {type(error).__name__}: {first}"
            print(f"    [6] {variant.name}: {skipped[variant.name]}", flush=True)
            continue
        if variant.compile_mode is not None:
            longest_compile = max(longest_compile, first_s)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        measured.append(Measured(variant, first_s, peak))
        steps_of[variant.name] = step
        print(f"    [6] {variant.name}: first step {first_s:.1f} s", flush=True)

    blocks = {m.variant.name: throughput_block(steps_of[m.variant.name], steps, batch, sync) for m in measured}
    if not blocks:
        return measured, skipped
    start = time.perf_counter()
    results = interleaved(blocks, 1)  # one round always, to know what a round costs
    round_s = time.perf_counter() - start
    rounds = max(0, min(repeats - 1, int((deadline - time.perf_counter()) / max(round_s, 1e-9))))
    if rounds:
        for name, rates in interleaved(dict(reversed(blocks.items())), rounds).items():
            results[name] += rates
    for m in measured:
        m.rates = results[m.variant.name]
    print(f"    [6] {1 + rounds} interleaved round(s) of {steps} steps, {round_s:.1f} s a round", flush=True)
    return measured, skipped
