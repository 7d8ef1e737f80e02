"""Section 6 (a GPU): ResNet-50 training images/s with MFU, and CIFAR ResNet-20 time to 91% test accuracy.

    resnet benchmark --only 6 --gpu-budget 420 [--data-dir DIR] [--gpu-peak-tflops 989]

Parts, each timed and printed as it ends; the budget is shared out as the section goes (a part gets a share of
what is left when it starts; a compiled variant or run starts only if its compilation fits), so the whole
section ends within ``--gpu-budget`` seconds plus at most one compilation's overrun:

0. one-time data preparation: the cifar10-jpeg tars extracted for ``ImageFolder`` and decoded into our cache
1. ResNet-50 224x224 training, batch 256: eager fp32 NCHW, eager bf16, ours eager (what
   `resnet train` runs on a GPU by default), ours compiled (``torch.compile`` default mode, and reduce-overhead
   with CUDA graphs); images/s, ratio to eager fp32, MFU, first-step (compile) time, peak memory
2. CIFAR ResNet-20 time to 91% test accuracy (gpu_cifar.py): ours, the common recipe, then ours with
   ``torch.compile`` if time is left; each capped in wall-clock time and reported as "not reached" when capped

MFU = 6 x MACs per image (forward and backward: three forward passes' worth, 2 FLOPs per multiply-add) x images/s
/ the card's dense bf16 peak. Every row is set against the bf16 peak, fp32 ones too, so the column compares like
with like. cuDNN autotuning and TF32 are on for every row (the fp32 baseline included: a stronger baseline
than torch's defaults). Everything takes a ``device``; the CPU test runs the section with tiny sizes.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import re
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import median

import torch

from resnet.benchmarks.common import Row
from resnet.benchmarks.end_to_end import find_cifar10_jpeg
from resnet.benchmarks.gpu_cifar import Attempt, failed, ours_config, prepare_data, run_common, run_ours
from resnet.benchmarks.steps import BASELINE, Variant, build_step
from resnet.runtime.measured import cpu_model, interleaved, throughput_block

# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from the vendors' datasheets (SXM parts unless named).
# Matched as whole words in the device name, longest key first: "H100 PCIe" before "H100"; "A10" is not "A100".
PEAK_BF16_TFLOPS = {
    "H200 NVL": 835.0,
    "H200": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "A10": 125.0,
}
GOAL_RATIO = 2.0  # issue 10: ours >= 2x eager fp32 on ResNet-50 training ...
GOAL_IMAGES_PER_S = 4500.0  # ... and >= 4,500 images/s on one H100/H200
GOAL_CIFAR_SPEEDUP = 3.0  # the CIFAR run >= 3x faster than the common recipe
THROUGHPUT_SHARE, OURS_SHARE, COMMON_SHARE = 0.5, 0.25, 0.65  # of the budget left when each part starts
RESERVE_S = 5.0  # kept back for the last prints


@dataclass
class GpuPlan:
    """What section 6 runs. The defaults are the GPU run; the CPU test passes a tiny model and data."""

    device: str = "cuda"
    budget_s: float = 420.0
    peak_tflops: float | None = None  # None: from PEAK_BF16_TFLOPS by the device name
    data_dir: str | None = None  # the folder holding cifar10-jpeg/ (default: the usual lookup)
    throughput: bool = True
    model: str = "resnet50"
    image_size: int = 224
    batch: int = 256
    num_classes: int = 1000
    steps: int = 15  # per timed block
    warmup: int = 3
    repeats: int = 3  # interleaved rounds at most
    compile_modes: tuple[str, ...] = ("default", "reduce-overhead")
    compile_backend: str = "inductor"
    compile_estimate_s: float = 90.0  # a compiled variant starts only if this much of its share is left
    cifar: bool = True
    cifar_model: str = "resnet20"
    target: float = 91.0  # percent test accuracy
    epochs: int = 40  # each side's schedule; the run stops earlier at the target or its cap
    ours_batch: int = 512
    common_batch: int = 128
    workers: int | None = None  # common recipe's DataLoader workers (default: one per core)
    cifar_compile: bool = True  # also ours with torch.compile, if its compilation and run fit what is left
    cifar_compile_estimate_s: float = 60.0
    prepare_in_background: bool = True  # extract and decode the CIFAR data in a spawned process during part 1


def plan_from_args(args: argparse.Namespace) -> GpuPlan:
    plan = GpuPlan(
        device=args.gpu_device,
        budget_s=args.gpu_budget,
        peak_tflops=args.gpu_peak_tflops,
        data_dir=args.data_dir,
        target=args.gpu_target,
        epochs=args.gpu_epochs,
        compile_modes=args.gpu_compile_modes,
    )
    return replace(plan, steps=8, repeats=2, cifar_compile=False) if args.quick else plan


def card_peak(name: str, override: float | None = None) -> tuple[float | None, str]:
    """(dense bf16 TFLOP/s, where the number comes from) for a device name."""
    if override:
        return override, "given by --gpu-peak-tflops"
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", name, re.IGNORECASE):
            return PEAK_BF16_TFLOPS[key], f"{key}, dense bf16, vendor datasheet"
    return None, "unknown card: pass --gpu-peak-tflops for MFU"


def mfu_percent(images_per_s: float, flops_per_image: float, peak_tflops: float | None) -> float | None:
    return None if not peak_tflops else 100.0 * images_per_s * flops_per_image / (peak_tflops * 1e12)


class Budget:
    """Seconds left of the section's budget, and the timing line of each part."""

    def __init__(self, seconds: float) -> None:
        self.total, self.start = seconds, time.perf_counter()

    def left(self) -> float:
        return self.total - (time.perf_counter() - self.start)

    def share(self, fraction: float) -> float:
        """``fraction`` of what is left, less the reserve for the last prints (never negative)."""
        return max(0.0, fraction * (self.left() - RESERVE_S))

    def done(self, part: str, started: float) -> None:
        took = time.perf_counter() - started
        print(f"[6] {part}: took {took:.1f} s; {max(self.left(), 0):.0f} s of the {self.total:.0f} s budget left")


def run(plan: GpuPlan) -> list[Row]:
    device = torch.device(plan.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("[6] GPU: skipped, no CUDA device on this machine")
        return []
    budget = Budget(plan.budget_s)
    folder = find_cifar10_jpeg(plan.data_dir) if plan.cifar else None  # a missing data set fails at once
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        name = f"{device.type} ({cpu_model()})"
    peak, source = card_peak(name, plan.peak_tflops)
    print(f"[6] device: {name}; peak assumed for MFU: {f'{peak:g} TFLOP/s' if peak else '-'} ({source})")
    print("[6] known dense bf16 peaks, TFLOP/s: " + ", ".join(f"{k} {v:g}" for k, v in PEAK_BF16_TFLOPS.items()))
    rows: list[Row] = []
    # The one-time data preparation (tens of seconds for 60,000 JPEGs) overlaps part 1, which waits on the GPU;
    # a spawned process (no fork of a CUDA process), shut down before the common recipe forks its workers.
    background = plan.prepare_in_background and folder is not None and plan.throughput
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) if background else None
    try:
        prepared = pool.submit(prepare_data, str(folder)) if pool else None
        if plan.throughput:
            rows += _throughput(plan, device, name, peak, budget)
        if folder is not None:
            started = time.perf_counter()
            train_dir, test_dir, extract_s, decode_s = prepared.result() if prepared else prepare_data(str(folder))
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    if folder is not None:
        where = " (in a background process during part 1)" if background else ""
        print(
            f"[6] one-time costs, outside both clocks{where}: tar extraction for ImageFolder {extract_s:.1f} s, "
            f"decoding into our tensor cache {decode_s:.1f} s (0 when done before)"
        )
        budget.done(f"part 2 set-up, waiting for the data of {folder}", started)
        rows += _cifar(plan, folder, Path(train_dir), Path(test_dir), budget)
    print(f"[6] section 6 took {time.perf_counter() - budget.start:.1f} s of its {plan.budget_s:.0f} s budget")
    return rows


# --- part 1: training images/s of one model, eager fp32 / eager bf16 / ours, each variant built by steps.py -------
def standard_variants(compile_modes: tuple[str, ...]) -> list[Variant]:
    """The baselines, ours eager, then ours compiled in each mode (cheapest first, so a short budget keeps them).

    The baselines are the plain loop (eager, NCHW, ``torch.optim.SGD`` with its defaults); ours is the trainer's
    own update (``resnet.train.step.train_step``) with bf16 autocast, channels-last and the `fast` recipe's fused
    SGD, eager and compiled in each requested ``torch.compile`` mode (``reduce-overhead`` adds CUDA graphs).
    """

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
    plan: GpuPlan, variants: list[Variant], device: torch.device, deadline: float
) -> tuple[list[Measured], dict[str, str]]:
    """Build and warm up each variant while the deadline allows, then time them in interleaved blocks.

    Every variant trains ``plan.model`` on the same synthetic batch. Returns the measured variants and, for each
    variant not measured, why. A compiled variant starts only when ``plan.compile_estimate_s`` (or the longest
    compilation seen so far, if longer) is left before ``deadline``. Nothing here is CUDA-specific.
    """
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    measured: list[Measured] = []
    skipped: dict[str, str] = {}
    steps_of: dict[str, Callable[[], None]] = {}
    longest_compile = plan.compile_estimate_s
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
            step = build_step(
                variant, plan.model, plan.image_size, plan.batch, plan.num_classes, device, plan.compile_backend
            )
            step()
            sync()
            first_s = time.perf_counter() - start
            for _ in range(plan.warmup):
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

    blocks = {
        m.variant.name: throughput_block(steps_of[m.variant.name], plan.steps, plan.batch, sync) for m in measured
    }
    if not blocks:
        return measured, skipped
    start = time.perf_counter()
    results = interleaved(blocks, 1)  # one round always, to know what a round costs
    round_s = time.perf_counter() - start
    rounds = max(0, min(plan.repeats - 1, int((deadline - time.perf_counter()) / max(round_s, 1e-9))))
    if rounds:
        for name, rates in interleaved(dict(reversed(blocks.items())), rounds).items():
            results[name] += rates
    for m in measured:
        m.rates = results[m.variant.name]
    print(f"    [6] {1 + rounds} interleaved round(s) of {plan.steps} steps, {round_s:.1f} s a round", flush=True)
    return measured, skipped


def _throughput(plan: GpuPlan, device: torch.device, name: str, peak: float | None, budget: Budget) -> list[Row]:
    from resnet.models import model_info

    started = time.perf_counter()
    variants = standard_variants(plan.compile_modes)
    measured, skipped = measure(plan, variants, device, deadline=started + budget.share(THROUGHPUT_SHARE))
    torch._dynamo.reset()  # compiled graphs and CUDA graph pools go before part 2
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    macs = model_info(plan.model, (3, plan.image_size, plan.image_size), num_classes=plan.num_classes)["macs"]
    flops = 6.0 * macs
    by_name = {m.variant.name: m for m in measured}
    base = by_name[BASELINE.name].rate if BASELINE.name in by_name else None
    big_card = peak is not None and re.search(r"H100|H200", name) is not None
    what = f"{plan.model} train {plan.image_size}px b{plan.batch}"
    rows = []
    for variant in variants:
        if variant.name in skipped:
            rows.append(Row("6 GPU", f"{what}: {variant.name}", None, base, "img/s", note=skipped[variant.name]))
            continue
        m = by_name[variant.name]
        mfu = mfu_percent(m.rate or 0.0, flops, peak)
        notes = [f"MFU {mfu:.1f}%" if mfu is not None else "MFU: unknown peak", f"first step {m.first_s:.1f} s"]
        if m.peak_mib is not None:
            notes.append(f"peak {m.peak_mib / 1024:.1f} GiB")
        compiled_ours = variant.ours and variant.compile_mode is not None
        if compiled_ours and big_card and m.rate is not None:
            notes.append(f">= {GOAL_IMAGES_PER_S:,.0f} img/s {'met' if m.rate >= GOAL_IMAGES_PER_S else 'MISSED'}")
        rows.append(
            Row("6 GPU", f"{what}: {variant.name}", m.rate, base, "img/s",
                goal=GOAL_RATIO if compiled_ours else None, note="; ".join(notes))
        )  # fmt: skip
    print(f"[6] {plan.model}: {flops / 1e9:.2f} GFLOP per training image (6 x {macs / 1e9:.3f} G multiply-adds)")
    budget.done(f"part 1, {plan.model} training throughput", started)
    return rows


def _cifar(plan: GpuPlan, folder: Path, train_dir: Path, test_dir: Path, budget: Budget) -> list[Row]:
    ours_runs: list[tuple[str, Attempt]] = []
    with tempfile.TemporaryDirectory(prefix="resnet-gpu-bench-") as tmp:

        def ours(compiled: bool, cap_s: float) -> Attempt:
            short = "ours + torch.compile" if compiled else "ours"
            run_dir = Path(tmp) / ("ours-compiled" if compiled else "ours")
            part_start = time.perf_counter()
            try:
                attempt = run_ours(short, ours_config(plan, folder.parent, compiled, run_dir), plan.target, cap_s)
            except Exception as error:  # one failed run must not lose the others' results
                attempt = failed(short, plan.target, error, time.perf_counter() - part_start)
            _report(attempt, cap_s)
            budget.done(f"part 2, {short}", part_start)
            ours_runs.append((short, attempt))
            return attempt

        eager = ours(False, budget.share(OURS_SHARE))
        part_start = time.perf_counter()
        cap = budget.share(COMMON_SHARE if plan.cifar_compile else 1.0)
        try:
            common = run_common(plan, train_dir, test_dir, cap)
        except Exception as error:
            common = failed("common recipe", plan.target, error, time.perf_counter() - part_start)
        _report(common, cap)
        budget.done("part 2, common recipe", part_start)
        if plan.cifar_compile:
            need, left = plan.cifar_compile_estimate_s + eager.total_s, budget.share(1.0)
            if left > need:
                ours(True, left)
            else:
                print(f"[6] ours + torch.compile: skipped, ~{need:.0f} s needed, {left:.0f} s left of the budget")
    return [row for short, attempt in ours_runs for row in _cifar_rows(plan, short, attempt, common)]


def _report(attempt: Attempt, cap_s: float) -> None:
    print(f"[6] {attempt.label} (cap {cap_s:.0f} s): {attempt.describe()}")
    print(f"    test accuracy after each epoch: {attempt.curve_text()}", flush=True)


def _cifar_rows(plan: GpuPlan, short: str, ours: Attempt, common: Attempt) -> list[Row]:
    """The time-to-target row; when either side missed the target, also the time to the lower of both bests."""
    what = f"{plan.cifar_model} cifar10-jpeg"
    note = f"{short}: {ours.describe()}; common: {common.describe()}"
    rows = [
        Row("6 GPU", f"{what} time to {plan.target:g}% test acc, {short} vs common", ours.reached_s,
            common.reached_s, "s", goal=GOAL_CIFAR_SPEEDUP, lower=True, note=note)
    ]  # fmt: skip
    bests = [a.best for a in (ours, common)]
    if (ours.reached_s is None or common.reached_s is None) and all(bests):
        level = min(b[1] for b in bests if b)  # both sides reached it
        rows.append(
            Row("6 GPU", f"{what} time to {level:.2f}% (the lower best), {short} vs common", ours.time_to(level),
                common.time_to(level), "s", lower=True, note="the target was missed: a level both sides reached")
        )  # fmt: skip
    return rows
