"""Section 6 (GPU only): ResNet-50 224x224 training images/s and MFU, eager fp32 vs eager bf16 vs ours.

Ours on a GPU is what `resnet train` resolves there: bf16 autocast, channels-last, ``torch.compile``, fused SGD.
MFU counts 3 x 2 x MACs per image (forward + backward) against the card's dense bf16 peak (fp32 rows against the
same peak, so the column compares like with like). Without CUDA the section prints one line and returns nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from common import Row, interleaved, median

# Dense bf16 tensor-core peaks (TFLOP/s) of common cards, from the vendors' data sheets.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0, "L40": 181.0}


def _peak_tflops(name: str) -> float | None:
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def _step(mode: str, batch: int) -> tuple[Callable[[], None], float]:
    """A training-step closure for ``mode`` (eager-fp32, eager-bf16, ours) and its first-call seconds."""
    import resnet
    from resnet.train.optim import sgd_implementation

    device = torch.device("cuda")
    model = resnet.create_model("resnet50").to(device)
    images = torch.randn(batch, 3, 224, 224, device=device)
    labels = torch.randint(0, 1000, (batch,), device=device)
    if mode == "ours":
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
        forward = torch.compile(model)
        params = list(model.parameters())
        optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4, **sgd_implementation(params))
    else:
        forward = model
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    dtype = None if mode == "eager-fp32" else torch.bfloat16
    criterion = nn.CrossEntropyLoss()

    def step() -> None:
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            loss = criterion(forward(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    step()
    torch.cuda.synchronize()
    return step, time.perf_counter() - start


def run(quick: bool, batch: int = 256) -> list[Row]:
    if not torch.cuda.is_available():
        print("[6] GPU: skipped, no CUDA device on this machine")
        return []
    import resnet

    name = torch.cuda.get_device_name()
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    steps, repeats = (10, 3) if quick else (30, 5)
    macs = resnet.model_info("resnet50")["macs"]
    peak = _peak_tflops(name)
    blocks, firsts = {}, {}
    for mode in ("ours", "eager-bf16", "eager-fp32"):
        step, firsts[mode] = _step(mode, batch)
        for _ in range(3):
            step()

        def block(step=step) -> float:
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                step()
            torch.cuda.synchronize()
            return steps * batch / (time.perf_counter() - start)

        blocks[mode] = block
    firsts_text = ", ".join(f"{mode} {seconds:.1f} s" for mode, seconds in firsts.items())
    print(f"[6] {name}; first step (compile included for ours): {firsts_text}")
    results = interleaved(blocks, repeats)
    base = median(results["eager-fp32"])
    rows = []
    for mode in ("ours", "eager-bf16"):
        rate = median(results[mode])
        mfu = f"MFU {100 * rate * 6 * macs / (peak * 1e12):.0f}%" if peak else "MFU: unknown card peak"
        goal = 2.0 if mode == "ours" else None
        rows.append(Row("6 GPU", f"ResNet-50 train 224, batch {batch}, {mode}", rate, base, "img/s", goal=goal,
                        note=f"{name}; {mfu}; goal also >= 4,500 img/s on H100/H200"))  # fmt: skip
    print("[6] CIFAR ResNet-20 time to 91% test accuracy (ours vs the common recipe): not implemented in this runner")
    return rows
