"""One training step on a synthetic batch, the benchmarks' one step builder; sections 2 and 5: ours vs eager fp32
NCHW, and cost against depth (section 6 and the repository's studies build their steps here too).

"Ours" is the update the trainer runs (``resnet.train.step.train_step``) with the `fast` recipe's optimizer from
``build_optimizer`` (fused SGD) and label smoothing, in the variant's precision, layout and ``torch.compile`` mode;
sections 2 and 5 take these from the decision `resnet train` makes here (``--amp auto`` and channels-last ``auto``
measured, compile off on the CPU). The baseline is the plain eager fp32 NCHW loop with ``torch.optim.SGD``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from statistics import median

import torch
from torch import nn

from resnet.benchmarks.common import Row, rate_block
from resnet.runtime.measured import interleaved

CIFAR_DEPTHS_QUICK = (20, 56, 110)
CIFAR_DEPTHS_FULL = (20, 32, 44, 56, 110, 1202)
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # inductor's modes that replay CUDA graphs
# The length of run the automatic choice is made for in these rows: a long one, which measures (or uses the cache).
LONG_RUN = 16000


@dataclass(frozen=True)
class Variant:
    name: str
    bf16: bool = False
    channels_last: bool = False
    compile_mode: str | None = None  # None: eager; else a torch.compile mode
    ours: bool = False  # the trainer's update and the recipe's fused SGD instead of the plain loop

    @property
    def cuda_graphs(self) -> bool:
        return self.compile_mode in CUDA_GRAPH_MODES


BASELINE = Variant("eager fp32 NCHW")
CPU = torch.device("cpu")


def compile_model(model: nn.Module, mode: str, backend: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.compile`` in ``mode`` (inductor's modes; another backend, e.g. "eager" in tests, takes no mode)."""
    if backend == "inductor":
        return torch.compile(model, mode=None if mode == "default" else mode)
    return torch.compile(model, backend=backend)


def build_step(
    variant: Variant,
    model_name: str,
    image_size: int,
    batch: int,
    num_classes: int | None = None,
    device: torch.device = CPU,
    backend: str = "inductor",
    in_chans: int = 3,
) -> Callable[[], None]:
    """A closure running one training update of ``variant`` on a fixed synthetic batch on ``device``;
    ``num_classes`` defaults to 10 for CIFAR-sized images, else 1000."""
    from resnet.models import create_model
    from resnet.train import load_config
    from resnet.train.optim.optimizers import build_optimizer
    from resnet.train.step import train_step

    classes = num_classes or (10 if image_size <= 64 else 1000)
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=classes, in_chans=in_chans).to(device)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, in_chans, image_size, image_size, generator=generator).to(device)
    labels = torch.randint(0, classes, (batch,), generator=generator).to(device)
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    forward = model if variant.compile_mode is None else compile_model(model, variant.compile_mode, backend)

    def autocast() -> torch.autocast:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=variant.bf16)

    if variant.ours:
        config = load_config("fast", {"system.device": device.type}, check=False)
        optimizer = build_optimizer(model, config, lr=0.1)
        criterion = nn.CrossEntropyLoss(label_smoothing=config.optim.label_smoothing)
        scaler = torch.amp.GradScaler(device.type, enabled=False)
        graphs = variant.cuda_graphs and backend == "inductor"

        def ours_step() -> None:
            if graphs:  # a new iteration for CUDA graph trees: the last step's outputs may be overwritten
                torch.compiler.cudagraph_mark_step_begin()
            train_step(forward, criterion, [(images, labels)], optimizer, scaler, autocast=autocast)

        return ours_step

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    plain_criterion = nn.CrossEntropyLoss()

    def plain_step() -> None:
        with autocast():
            loss = plain_criterion(forward(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return plain_step


def ours_step(name: str, size: int, batch: int) -> tuple[Callable[[], None], str]:
    """A closure running our default training step on the CPU, and the precision and layout it runs: the decision
    ``resnet train`` makes for a long run here (measured once, then cached)."""
    from resnet.config import SystemConfig
    from resnet.models import create_model
    from resnet.runtime import measured, resolve_runtime

    system = SystemConfig(device="cpu")
    classes = 10 if size <= 64 else 1000
    work = measured.Workload(f"{name} {{}}", (batch, 3, size, size), classes, LONG_RUN)
    runtime, decision = measured.decide_training(
        resolve_runtime(system), system, create_model(name, num_classes=classes), work
    )
    variant = Variant(
        decision.choice, bf16=runtime.amp_dtype == torch.bfloat16, channels_last=runtime.channels_last,
        compile_mode="default" if runtime.compile else None, ours=True,
    )  # fmt: skip
    return build_step(variant, name, size, batch), decision.choice


def training_steps(quick: bool) -> list[Row]:
    """Section 2: resnet20 and resnet56 at 32x32, resnet18 at 224x224; then every precision and layout of the
    resnet20 step, the one ``--amp auto`` picks marked, each against the fastest."""
    cases = [("resnet20", 32, 128), ("resnet56", 32, 128), ("resnet18", 224, 16 if quick else 64)]
    steps, repeats = (2, 2) if quick else (5, 5)
    rows = []
    for name, size, batch in cases:
        (ours, choice), base = ours_step(name, size, batch), build_step(BASELINE, name, size, batch)
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

    system = SystemConfig(device="cpu")
    rule = resolve_runtime(system)
    candidates = measured.training_candidates(system, rule.device, rule)
    names = list(candidates)
    shown = dict(candidates)
    shown.setdefault("bf16 channels-last", (torch.bfloat16, True))
    _, auto = ours_step("resnet20", 32, 128)
    blocks = {}
    for name, (dtype, channels_last) in shown.items():
        variant = Variant(name, bf16=dtype == torch.bfloat16, channels_last=channels_last, ours=True)
        step = build_step(variant, "resnet20", 32, 128)
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
