"""Sections 2 and 5: one training step on a synthetic batch, ours vs eager fp32 NCHW; cost against depth.

"Ours" is the step the trainer runs with its defaults on this machine: the runtime `resnet train` resolves
(`--amp auto`, channels-last, compile off on the CPU), the recipe's optimizer from ``build_optimizer`` (fused
SGD), ``zero_grad(set_to_none=True)``. The baseline is the plain eager fp32 NCHW loop with ``torch.optim.SGD``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from resnet.benchmarks.common import Row, interleaved, median

CIFAR_DEPTHS_QUICK = (20, 56, 110)
CIFAR_DEPTHS_FULL = (20, 32, 44, 56, 110, 1202)


def _batch(size: int, batch: int, classes: int, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=generator)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, torch.randint(0, classes, (batch,), generator=generator)


def ours_step(name: str, size: int, batch: int, amp: str = "auto") -> Callable[[], None]:
    """A closure running one of our default training steps."""
    from resnet.models import create_model
    from resnet.runtime import resolve_runtime
    from resnet.train import load_config
    from resnet.train.optim.optimizers import build_optimizer

    config = load_config("fast", {"model.name": name, "system.device": "cpu", "system.amp": amp}, check=False)
    runtime = resolve_runtime(config.system)
    classes = 10 if size <= 64 else 1000
    model = create_model(name, num_classes=classes)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if runtime.compile else model
    optimizer = build_optimizer(model, config, lr=0.1)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.optim.label_smoothing)
    images, labels = _batch(size, batch, classes, runtime.channels_last)

    def step() -> None:
        with runtime.autocast():
            loss = criterion(forward(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def eager_step(name: str, size: int, batch: int) -> Callable[[], None]:
    """The plain loop: eager fp32 NCHW, ``torch.optim.SGD`` with its defaults."""
    from resnet.models import create_model

    classes = 10 if size <= 64 else 1000
    model = create_model(name, num_classes=classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    criterion = nn.CrossEntropyLoss()
    images, labels = _batch(size, batch, classes, channels_last=False)

    def step() -> None:
        loss = criterion(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def rate_block(step: Callable[[], object], steps: int, batch: int) -> Callable[[], float]:
    """A block of ``steps`` steps, returning images/s (the median step time, robust to a stray stall)."""

    def block() -> float:
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return batch / median(times)

    return block


def training_steps(quick: bool) -> list[Row]:
    """Section 2: resnet20 and resnet56 at 32x32, resnet18 at 224x224; plus a forced-bf16 row."""
    cases = [("resnet20", 32, 128), ("resnet56", 32, 128), ("resnet18", 224, 16 if quick else 64)]
    steps, repeats = (2, 2) if quick else (5, 5)
    rows = []
    for name, size, batch in cases:
        ours, base = ours_step(name, size, batch), eager_step(name, size, batch)
        ours(), base()  # warm-up: oneDNN primitive creation, allocator
        results = interleaved(
            {"ours": rate_block(ours, steps, batch), "base": rate_block(base, steps, batch)},
            repeats,
            f"[2] {name} img/s",
        )
        rows.append(
            Row("2 train step", f"{name} {size}x{size} batch {batch}", median(results["ours"]),
                median(results["base"]), "img/s", note="ours = resnet train's defaults here")
        )  # fmt: skip
    # bf16 autocast forced, to show what --amp auto avoids (or takes) on this CPU
    bf16 = ours_step("resnet20", 32, 128, amp="bf16")
    fp32 = ours_step("resnet20", 32, 128, amp="off")
    bf16(), fp32()
    results = interleaved(
        {"bf16": rate_block(bf16, steps, 128), "fp32": rate_block(fp32, steps, 128)}, repeats, "[2] resnet20 img/s"
    )
    rows.append(
        Row("2 train step", "resnet20 bf16 autocast vs fp32 (both channels-last)", median(results["bf16"]),
            median(results["fp32"]), "img/s", note="the choice --amp auto makes; >1 only with native bf16")
    )  # fmt: skip
    return rows


def saved_bytes(name: str, batch: int, size: int = 32) -> tuple[float, float]:
    """(MiB kept for backward by one training forward, MiB of weights + grads + momentum), exact, on ``meta``.

    Autograd's saved tensors are counted once per storage (in-place ops and views share one), on meta tensors: the
    same shapes as on a real device, without the compute, so even ResNet-1202 at batch 128 costs nothing.
    """
    from resnet.models import create_model

    model = create_model(name, num_classes=10).to("meta").to(memory_format=torch.channels_last)
    images = torch.empty(batch, 3, size, size, device="meta").contiguous(memory_format=torch.channels_last)
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage._cdata] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(images)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return sum(storages.values()) / 2**20, 3 * weights / 2**20


def depth_scaling(quick: bool) -> list[Row]:
    """Section 5: images/s and memory of one step against depth; images/s x depth should stay constant."""
    depths = CIFAR_DEPTHS_QUICK if quick else CIFAR_DEPTHS_FULL
    batch, steps = (32, 2) if quick else (128, 3)
    rows, first = [], None
    for depth in depths:
        name = f"resnet{depth}"
        step = ours_step(name, 32, batch)
        step()
        rate = rate_block(step, 1 if depth > 200 else steps, batch)()
        activations, states = saved_bytes(name, 128)
        first = first or rate * depth
        print(f"    [5] {name}: {rate:,.1f} img/s, {activations:,.0f} + {states:,.0f} MiB", flush=True)
        rows.append(
            Row("5 depth", f"{name} step, batch {batch}", rate, None, "img/s",
                note=f"img/s x depth = {rate * depth / first:.2f} of resnet{depths[0]}'s; memory at batch 128: "
                f"{activations:,.0f} MiB saved for backward + {states:,.0f} MiB weights/grads/momentum")
        )  # fmt: skip
    if 1202 not in depths:
        activations, states = saved_bytes("resnet1202", 128)
        rows.append(
            Row("5 depth", "resnet1202 memory, batch 128", activations + states, None, "MiB",
                note=f"{activations:,.0f} MiB saved for backward + {states:,.0f} MiB weights/grads/momentum (exact)")
        )  # fmt: skip
    return rows
