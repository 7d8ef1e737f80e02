"""Shared pieces of the benchmark runner: the timed block, the machine description and the ratio table.

On a shared or throttled machine absolute timings drift; ours and the baseline are therefore measured in
alternating blocks (A B B A A B ..., ``resnet.runtime.measured.interleaved``, the timing the automatic choices use)
and each side reports the median of its blocks, so drift hits both alike and the ratio is what to read.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from statistics import median

import torch

from resnet.runtime.measured import cpu_model


@dataclass
class Row:
    """One line of the final table: ``ours`` and ``base`` in ``unit`` (higher is better unless ``lower``)."""

    section: str
    name: str
    ours: float | None
    base: float | None
    unit: str
    goal: float | None = None  # the target ratio, if any
    lower: bool = False  # seconds or bytes: the ratio is base / ours
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.ours or not self.base:
            return None
        return self.base / self.ours if self.lower else self.ours / self.base


def rate_block(step: Callable[[], object], calls: int, images: int) -> Callable[[], float]:
    """A block of ``calls`` calls of ``step``, returning images/s of the median call (robust to a stray stall)."""

    def block() -> float:
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return images / median(times)

    return block


def environment() -> list[str]:
    """What the numbers were measured on: CPU, relevant flags, precision choice, versions, threads, load."""
    import torchvision

    from resnet.runtime import cpu_bf16_choice, cpu_flags

    flags = cpu_flags()
    shown = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    lines = [
        f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; flags: {' '.join(shown) or '-'}; "
        f"torch kernels {torch.backends.cpu.get_cpu_capability()}",
        f"--amp auto on this CPU: {cpu_bf16_choice()[1]}",
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, Python {platform.python_version()}, "
        f"{torch.get_num_threads()} intra-op threads",
    ]
    if torch.cuda.is_available():
        lines.append(f"GPU: {torch.cuda.get_device_name()} (CUDA {torch.version.cuda})")
    else:
        lines.append("GPU: none")
    if hasattr(os, "getloadavg"):
        lines.append("load average at start: {:.2f} {:.2f} {:.2f} (1/5/15 min)".format(*os.getloadavg()))
    return lines


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "MiB":
        return f"{value:,.0f}"
    return f"{value:,.1f}" if value >= 10 else f"{value:,.3g}"


def print_table(rows: list[Row]) -> None:
    """The table of ratios, printed last."""
    header = ("section", "benchmark", "ours", "baseline", "unit", "ratio", "goal", "note")
    cells = [
        (
            r.section,
            r.name,
            _fmt(r.ours, r.unit),
            _fmt(r.base, r.unit),
            r.unit,
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            "" if r.goal is None else (f">={r.goal:g}x" + (" met" if r.ratio and r.ratio >= r.goal else " MISSED")),
            r.note,
        )
        for r in rows
    ]
    widths = [max(len(str(c[i])) for c in [header, *cells]) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print()
    print(line.format(*header).rstrip())
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print(line.format(*c).rstrip())
