"""Section 3: ResNet-50 inference, batch 32 at 224x224: ``prepare_for_inference`` vs torchvision eager fp32 NCHW.

Ours folds BN into the convolutions, runs channels-last, in bf16 where the CPU has native bf16, under
``torch.inference_mode``. The full run also times ``torch.compile`` of the prepared model (compile time reported
apart) and ONNX Runtime when it is installed, so that docs/performance.md can say which is faster here.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from common import Row, interleaved, median


def _block(fn: Callable[[], object], calls: int, batch: int) -> Callable[[], float]:
    def block() -> float:
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return batch / median(times)

    return block


def run(quick: bool, batch: int = 32) -> list[Row]:
    import torchvision

    import resnet
    from resnet.eval.fast import describe, prepare_for_inference

    calls, repeats = (1, 2) if quick else (3, 5)
    images = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    baseline = torchvision.models.resnet50().eval()
    ours = prepare_for_inference(resnet.create_model("resnet50"), "cpu")
    print(f"[3] ours: {describe(ours.choices)}")

    def plain() -> object:
        with torch.no_grad():
            return baseline(images)

    def fast() -> object:
        with torch.inference_mode():
            return ours(images)

    plain(), fast()  # warm-up
    blocks = {"ours": _block(fast, calls, batch), "base": _block(plain, calls, batch)}
    extra: list[Row] = []
    if not quick:
        compiled = prepare_for_inference(resnet.create_model("resnet50"), "cpu", compile=True)

        def fast_compiled() -> object:
            with torch.inference_mode():
                return compiled(images)

        start = time.perf_counter()
        fast_compiled()
        compile_s = time.perf_counter() - start
        print(f"[3] torch.compile of the prepared ResNet-50 (first call): {compile_s:.1f} s")
        blocks["compiled"] = _block(fast_compiled, calls, batch)
        onnx = _onnxruntime_session(ours, images)
        if onnx is not None:
            blocks["onnxruntime"] = _block(onnx, calls, batch)
    results = interleaved(blocks, repeats, "[3] img/s")
    base = median(results["base"])
    rows = [
        Row("3 inference", f"ResNet-50 batch {batch} 224x224", median(results["ours"]), base, "img/s", goal=2.0,
            note="ours: " + describe(ours.choices).split(";")[0])
    ]  # fmt: skip
    if "compiled" in results:
        extra.append(
            Row("3 inference", "  + torch.compile (inductor)", median(results["compiled"]), base, "img/s",
                note=f"compile {compile_s:.0f} s, not counted")
        )  # fmt: skip
    if "onnxruntime" in results:
        extra.append(Row("3 inference", "  ONNX Runtime (folded model)", median(results["onnxruntime"]), base, "img/s"))
    return rows + extra


def _onnxruntime_session(model: torch.nn.Module, images: torch.Tensor) -> Callable[[], object] | None:
    """An ONNX Runtime run of the prepared model, or None (with a line) when onnx/onnxruntime are missing."""
    try:
        import copy
        import io

        import onnxruntime
    except ImportError:
        print("[3] ONNX Runtime: skipped (pip install onnxruntime onnx to include it)")
        return None
    buffer = io.BytesIO()
    try:
        torch.onnx.export(copy.deepcopy(model.model).float(), images, buffer, input_names=["images"], dynamo=False)
    except Exception as error:  # the exporter's dependencies vary between torch versions
        print(f"[3] ONNX Runtime: skipped, export failed ({type(error).__name__}: {error})")
        return None
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    feed = {"images": images.numpy()}
    session.run(None, feed)
    return lambda: session.run(None, feed)
