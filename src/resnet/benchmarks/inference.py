"""Section 3: ResNet-50 inference, batch 32 at 224x224: ``prepare_for_inference`` vs torchvision eager fp32 NCHW.

Ours folds BN into the convolutions, in bf16 where the CPU has native bf16, under ``torch.inference_mode``; the
headline row is ``backend="auto"``, what ``resnet eval``/``predict`` run by default. Each backend is a row of its
own, interleaved with the same baseline:

- ``eager``: channels-last PyTorch;
- ``onnxruntime``: the folded model exported to ONNX, one CPU session with torch's thread count (fp32; the auto
  choice for fp32 on the CPU, so then the headline row);
- ``compile``: ``torch.compile`` with inductor freezing (oneDNN prepacked weights), full run only;
- ``jit.freeze``: ``torch.jit.optimize_for_inference(torch.jit.freeze(trace))`` of the plain model, the
  TorchScript route (not a backend of the library: a reference point).

One-time costs (session creation, tracing, compilation = the first call) are printed apart, never counted in a rate;
every variant's outputs are checked against the baseline's before timing (max abs difference printed).
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable
from statistics import median

import torch

from resnet.benchmarks.common import Row, rate_block
from resnet.runtime.measured import interleaved


def _timed(label: str, make: Callable[[], Callable[[], torch.Tensor]]) -> tuple[Callable[[], torch.Tensor], float]:
    """``make()`` and its first call (where compilers compile), timed together as a one-time cost; a prepared
    model's ``setup_seconds`` (folding, ONNX export, session creation) is added by the caller."""
    start = time.perf_counter()
    fn = make()
    fn()
    seconds = time.perf_counter() - start
    print(f"[3] {label}: first call {seconds:.1f} s (not counted)", flush=True)
    return fn, seconds


def run(quick: bool, batch: int = 32, compile: bool | None = None) -> list[Row]:
    """The rows of section 3; ``compile`` (default: the full run only) adds the torch.compile backend."""
    import torchvision

    from resnet.errors import ResNetError
    from resnet.inference.fast import describe, prepare_for_inference
    from resnet.models import create_model
    from resnet.runtime import has_cpp_compiler

    calls, repeats = (1, 3) if quick else (3, 5)
    images = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    baseline = torchvision.models.resnet50().eval()
    model = create_model("resnet50").eval()
    model.load_state_dict(baseline.state_dict())  # the same weights: outputs comparable across variants

    def infer(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], torch.Tensor]:
        def call() -> torch.Tensor:
            with torch.inference_mode():
                return fn(images)

        return call

    plain, _ = _timed("baseline (torchvision eager fp32 NCHW)", lambda: infer(baseline))
    expected = plain()
    variants: dict[str, tuple[Callable[[], torch.Tensor], float, str]] = {}
    # what `resnet eval` runs by default for a long evaluation (50k images: measured here once, then cached)
    ours = prepare_for_inference(model, "cpu", backend="auto", batch_shape=tuple(images.shape), work_images=50_000)
    auto = ours.choices["backend"]
    print(f"[3] ours: {describe(ours.choices)}; prepared in {ours.choices['setup_seconds']:.1f} s")
    fn, first = _timed(f"ours ({auto})", lambda: infer(ours))
    variants["ours"] = (fn, first + ours.choices["setup_seconds"], f"auto = {auto}: {describe(ours.choices)}")
    for backend in ("eager", "onnxruntime"):
        if backend != auto:
            try:
                prepared = prepare_for_inference(model, "cpu", backend=backend, example=images[:2])
            except ResNetError as error:
                print(f"[3] {backend}: skipped ({error})")
                continue
            fn, first = _timed(backend, functools.partial(infer, prepared))
            note = describe(prepared.choices).split(";")[0]
            variants[backend] = (fn, first + prepared.choices["setup_seconds"], note)
    variants["jit.freeze"] = (*_timed("torch.jit freeze", lambda: infer(_jit_frozen(model, images))), "plain model")
    compile = not quick if compile is None else compile
    if compile and has_cpp_compiler():
        compiled = prepare_for_inference(model, "cpu", backend="compile")
        variants["compile"] = (*_timed("torch.compile (freezing)", lambda: infer(compiled)), "inductor, freezing")
    elif compile:
        print("[3] torch.compile: skipped (no C++ compiler)")
    for name, (fn, _, _) in variants.items():
        diff = (fn() - expected).abs().max().item()
        print(f"[3] {name}: max abs difference to the baseline {diff:.2e} (logits up to {expected.abs().max():.1f})")

    blocks = {"base": rate_block(plain, calls, batch)}
    blocks.update({name: rate_block(fn, calls, batch) for name, (fn, _, _) in variants.items()})
    results = interleaved(blocks, repeats, "[3] img/s")
    base = median(results["base"])
    rows = []
    for name, (_, setup, note) in variants.items():
        label = f"ResNet-50 batch {batch} 224x224" if name == "ours" else f"  {name}"
        note = f"{note.split(';')[0]}; set-up + first call {setup:.0f} s"
        goal = None if name == "jit.freeze" else 2.0  # a reference point, not a path of the library
        rows.append(Row("3 inference", label, median(results[name]), base, "img/s", goal=goal, note=note))
    library = [median(results[name]) for name in variants if name not in ("jit.freeze", "compile")]
    rows.append(
        Row("3 inference", "  auto vs the fastest library backend", median(results["ours"]), max(library), "img/s",
            goal=0.9, note=f"auto = {ours.choices['precision']} {auto}; eager and onnxruntime timed")
    )  # fmt: skip
    return rows


def _jit_frozen(model: torch.nn.Module, images: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The TorchScript inference route: trace, freeze (folds BN itself), optimize_for_inference (oneDNN layouts)."""
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice
        traced = torch.jit.trace(copy.deepcopy(model).eval(), images[:2])
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced))
