"""Sections 2 and 5: one training step on a synthetic batch, ours vs eager fp32 NCHW; cost against depth.

"Ours" is the step the trainer runs with its defaults on this machine: the runtime `resnet train` resolves
(`--amp auto` and channels-last ``auto`` measured, compile off on the CPU), the recipe's optimizer from
``build_optimizer`` (fused SGD), ``zero_grad(set_to_none=True)``. The baseline is the plain eager fp32 NCHW loop
with ``torch.optim.SGD``.
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


def ours_step(
    name: str, size: int, batch: int, amp: str = "auto", channels_last: str = "auto"
) -> tuple[Callable[[], None], str]:
    """A closure running one of our default training steps, and the precision and layout it runs: for ``auto``
    the decision ``resnet train`` makes for a long run here (measured once, then cached)."""
    from resnet.models import create_model
    from resnet.runtime import measured, resolve_runtime
    from resnet.train import load_config
    from resnet.train.optim.optimizers import build_optimizer

    settings = {"model.name": name, "system.device": "cpu", "system.amp": amp, "system.channels_last": channels_last}
    config = load_config("fast", settings, check=False)
    classes = 10 if size <= 64 else 1000
    model = create_model(name, num_classes=classes)
    runtime, decision = measured.decide_training(
        resolve_runtime(config.system), config.system, model, model_name=f"{name} {{}}",
        batch=(batch, 3, size, size), num_classes=classes, iterations=LONG_RUN,
    )  # fmt: skip
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

    return step, decision.choice


# The length of run the automatic choice is made for in these rows: a long one, which measures (or uses the cache).
LONG_RUN = 16000


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
    """Section 2: resnet20 and resnet56 at 32x32, resnet18 at 224x224; then every precision and layout of the
    resnet20 step, the one ``--amp auto`` picks marked, each against the fastest."""
    cases = [("resnet20", 32, 128), ("resnet56", 32, 128), ("resnet18", 224, 16 if quick else 64)]
    steps, repeats = (2, 2) if quick else (5, 5)
    rows = []
    for name, size, batch in cases:
        (ours, choice), base = ours_step(name, size, batch), eager_step(name, size, batch)
        ours(), base()  # warm-up: oneDNN primitive creation, allocator
        results = interleaved(
            {"ours": rate_block(ours, steps, batch), "base": rate_block(base, steps, batch)},
            repeats,
            f"[2] {name} img/s",
        )
        rows.append(
            Row("2 train step", f"{name} {size}x{size} batch {batch}", median(results["ours"]),
                median(results["base"]), "img/s", note=f"ours = resnet train's defaults here ({choice})")
        )  # fmt: skip
    return rows + candidate_rows(steps, repeats)


def candidate_rows(steps: int, repeats: int) -> list[Row]:
    """The resnet20 step in each precision and layout ``--amp auto`` chooses from here (plus bf16 channels-last
    where it is no candidate, to show what is avoided); the auto row's ratio is to the fastest candidate."""
    from resnet.config import SystemConfig
    from resnet.runtime import measured, resolve_runtime

    rule = resolve_runtime(SystemConfig(device="cpu"))
    names = list(measured.training_candidates(SystemConfig(device="cpu"), rule.device, rule))
    shown = names + ([] if "bf16 channels-last" in names else ["bf16 channels-last"])
    _, auto = ours_step("resnet20", 32, 128)
    blocks = {}
    for name in shown:
        precision, _, layout = name.partition(" ")
        amp = {"fp32": "off", "bf16": "bf16"}[precision]
        step, _ = ours_step("resnet20", 32, 128, amp=amp, channels_last="on" if layout == "channels-last" else "off")
        step()
        blocks[name] = rate_block(step, steps, 128)
    results = {name: median(values) for name, values in interleaved(blocks, repeats, "[2] resnet20 img/s").items()}
    best = max((results[name] for name in names), default=0.0)
    rows = [
        Row("2 train step", f"resnet20 {auto}, the auto choice, vs the fastest candidate", results.get(auto), best,
            "img/s", goal=0.9, note=f"candidates: {', '.join(names)}")
    ]  # fmt: skip
    for name in shown:
        note = "auto's pick" if name == auto else ("" if name in names else "no bf16 kernels here: not a candidate")
        rows.append(Row("2 train step", f"  resnet20 {name}", results[name], best, "img/s", note=note))
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
        step, _ = ours_step(name, 32, batch)
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
