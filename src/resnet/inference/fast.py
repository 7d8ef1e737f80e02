"""The inference fast path: BN folded into convolutions, channels-last, bf16 where the hardware has it, run by
eager PyTorch, ``torch.compile`` or ONNX Runtime.

``prepare_for_inference`` wraps a trained model so that callers (``resnet eval``/``predict``, ``LoadedModel``,
benchmarks) feed ordinary fp32 NCHW batches and get fp32 outputs back, while the work inside runs in the fastest
layout and precision that keeps the predictions: each choice is recorded in ``.choices`` (``describe`` prints it)
and checked against the plain model in the tests. ``PLAIN`` gives the reference path (the eval-mode model as
trained, fp32 NCHW) through the same wrapper.

The backends: eager PyTorch, ``torch.compile`` (inductor) or ONNX Runtime. benchmarks/inference.py measures them
against each other and against torchvision's eager fp32 NCHW ResNet-50 (docs/performance.md). ``"auto"`` (the
default of ``resnet eval``/``predict``) takes ONNX Runtime for fp32 on the CPU, where it measured fastest
(1.4-1.7x our eager channels-last path on an AVX2 CPU, ResNet-20 to ResNet-50, batch 1 to 256), eager elsewhere.
"""

from __future__ import annotations

import copy
import functools
import io
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from resnet.errors import ConfigError
from resnet.inference import BACKENDS, PRECISIONS
from resnet.models.fuse import fuse_conv_bn
from resnet.runtime import has_cpp_compiler

PLAIN: dict[str, Any] = {"precision": "fp32", "channels_last": False, "fold_bn": False, "backend": "eager"}


Runner = Callable[[torch.Tensor], Any]


def check_backend(backend: str, device: torch.device) -> None:
    """A clear error for a backend that cannot run here, before any work is done."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "onnxruntime":
        if device.type != "cpu":
            raise ConfigError(f"the onnxruntime backend runs on the CPU only, not {device}; use eager or compile")
        missing = onnxruntime_missing()
        if missing:
            raise ConfigError(
                f"the onnxruntime backend needs onnx and onnxruntime ({missing} is missing): "
                "`pip install onnx onnxruntime`, or use --backend eager"
            )
    if backend == "compile" and device.type == "cpu" and not has_cpp_compiler():
        raise ConfigError(
            "torch.compile on the CPU needs a C++ compiler (g++ or clang++ on PATH, or $CXX); install one, "
            "or use --backend eager"
        )


def resolve_backend(backend: str, device: torch.device, dtype: torch.dtype) -> tuple[str, str]:
    """The backend ``"auto"`` stands for here, and why: ONNX Runtime for fp32 on the CPU when it is installed."""
    if backend != "auto":
        return backend, "requested"
    if device.type != "cpu":
        return "eager", f"eager on {device.type}"
    if dtype != torch.float32:
        return "eager", "eager: ONNX Runtime runs fp32 only"
    missing = onnxruntime_missing()
    if missing:
        return "eager", f"eager: {missing} is not installed"
    return "onnxruntime", "ONNX Runtime: measured fastest for fp32 on the CPU"


def onnxruntime_missing() -> str | None:
    """Which of onnx (the exporter writes through it) and onnxruntime is not installed; None when both are."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as error:
        return error.name or "onnxruntime"
    return None


class OnnxRuntimeRunner:
    """The model exported to ONNX in memory and run by an ONNX Runtime CPU session with torch's thread count.

    Batch, height and width are dynamic, so the last (smaller) batch and multi-scale inputs need no new session.
    Inputs are fp32 NCHW on the CPU; outputs come back as torch tensors (one, or a list for a feature backbone).
    """

    def __init__(self, model: nn.Module, example: torch.Tensor, opset: int = 17) -> None:
        import onnxruntime as ort

        model = model.eval().float().cpu()
        with torch.no_grad():
            reference = model(example)
        self.many = not isinstance(reference, torch.Tensor)
        outputs = [f"output{i}" for i in range(len(reference))] if self.many else ["output"]
        axes: dict[str, dict[int, str]] = {"input": {0: "batch", 2: "height", 3: "width"}}
        axes.update({name: {0: "batch"} for name in outputs})
        buffer = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and tracer notes
            torch.onnx.export(
                model, (example,), buffer,  # type: ignore[arg-type]  # torch.onnx.export writes to file objects too
                dynamo=False, opset_version=opset, input_names=["input"],
                output_names=outputs, dynamic_axes=axes,
            )  # fmt: skip
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: torch.Tensor) -> Any:
        feed = {"input": images.detach().cpu().float().contiguous().numpy()}
        outputs = [torch.from_numpy(o) for o in self.session.run(None, feed)]
        return outputs if self.many else outputs[0]


def example_input(model: nn.Module, size: int = 64) -> torch.Tensor:
    """A small batch the model accepts (its ``in_chans``), for tracing the ONNX graph."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    channels = conv.in_channels if conv is not None else 3
    return torch.zeros(2, channels, size, size)


def inference_precision(precision: str, device: torch.device, backend: str = "eager") -> tuple[torch.dtype, str]:
    """The weight/activation dtype for ``precision`` on ``device`` and why (bf16 only where it is native)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if backend == "onnxruntime":
        if precision == "bf16":
            raise ConfigError("the onnxruntime backend runs fp32 only; use --precision auto/fp32 or another backend")
        return torch.float32, "fp32: the onnxruntime backend runs fp32"
    if precision == "fp32":
        return torch.float32, "fp32 (requested)"
    if precision == "bf16":
        return torch.bfloat16, "bf16 (requested)"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "bf16: the GPU supports it"
        return torch.float32, "fp32: the GPU has no bf16"
    if device.type == "cpu":
        from resnet.runtime import cpu_bf16_choice

        native, reason = cpu_bf16_choice()
        return (torch.bfloat16, "bf16: " + reason.partition(": ")[2]) if native else (torch.float32, reason)
    return torch.float32, f"fp32 on {device.type}"


def inference_options(
    fast: bool = True, precision: str = "auto", backend: str = "auto", retune: bool = False
) -> dict[str, Any]:
    """Keyword arguments of ``prepare_for_inference`` for ``resnet eval``/``predict``: the fast path with this
    precision and backend, or (``fast=False``) the plain eval-mode model, which takes neither."""
    if fast:
        return {"precision": precision, "backend": backend, **({"retune": True} if retune else {})}
    if precision != "auto" or backend not in ("auto", "eager"):
        raise ConfigError(
            "the plain path (--no-fast) runs the model as trained in fp32 eager; drop --precision/--backend"
        )
    return dict(PLAIN)


class InferenceModel(nn.Module):
    """A prepared model: takes fp32 images in any layout on any device, returns fp32 outputs, never autograd."""

    def __init__(
        self, model: nn.Module, device: torch.device, dtype: torch.dtype, channels_last: bool, choices: dict[str, Any]
    ) -> None:
        super().__init__()
        self.model = model
        self.device = device
        self.dtype = dtype
        self.channels_last = channels_last
        self.choices = choices
        self.runner: Any = None  # a compiled or ONNX Runtime form of ``model`` (kept out of the module tree)

    def forward(self, images: torch.Tensor) -> Any:
        memory_format = torch.channels_last if self.channels_last and images.dim() == 4 else torch.preserve_format
        images = images.to(self.device, self.dtype, non_blocking=True, memory_format=memory_format)
        with torch.no_grad():  # inductor's freezing needs it; nothing here is trained
            out = (self.model if self.runner is None else self.runner)(images)
        if isinstance(out, torch.Tensor):
            return out.float()
        return [o.float() for o in out]  # a features_only backbone

    def train(self, mode: bool = True) -> InferenceModel:
        if mode:
            raise RuntimeError("a model prepared for inference (BN folded) cannot be trained; train the original")
        return super().train(False)


def prepare_for_inference(
    model: nn.Module,
    device: str | torch.device = "cpu",
    *,
    precision: str = "auto",
    channels_last: bool | None = None,
    fold_bn: bool = True,
    backend: str = "eager",
    example: torch.Tensor | None = None,
    batch_shape: tuple[int, ...] | None = None,
    work_images: int | None = None,
    retune: bool = False,
) -> InferenceModel:
    """A fast inference copy of ``model`` (the original is left untouched).

    ``precision="auto"`` uses bf16 on GPUs and on CPUs with native bf16 (avx512_bf16/AMX), fp32 elsewhere;
    ``channels_last=None`` turns it on for CPU and CUDA (oneDNN and cuDNN are faster in NHWC). ``backend``:
    ``"eager"`` (default); ``"compile"`` (``torch.compile`` with inductor freezing; compiles on the first call,
    worth it for long jobs); ``"onnxruntime"`` (CPU, fp32; traced at ``example``'s channels, runs any size);
    ``"auto"``: ONNX Runtime for fp32 on the CPU (measured fastest there), eager elsewhere or if an export fails.
    ``**PLAIN`` gives the unfolded fp32 NCHW eager model as the reference.

    With ``batch_shape`` (the batches the work runs), whatever ``precision``/``backend`` leave to ``"auto"`` is the
    fastest of the candidates measured here (eager fp32, eager bf16 where the kernels exist, ONNX Runtime fp32), or
    the decision cached for this machine, model and shape; the rule above only when ``work_images`` is too few to
    repay a measurement (see ``resnet.runtime.measured``); ``retune`` measures again whatever the cache holds.
    """
    device = torch.device(device)
    check_backend(backend, device)
    if batch_shape is not None and "auto" in (precision, backend) and channels_last is None and fold_bn:
        return _measured(model, device, precision, backend, example, batch_shape, work_images, retune)
    dtype, reason = inference_precision(precision, device, backend)
    backend, backend_reason = resolve_backend(backend, device, dtype)
    if channels_last is None:
        channels_last = device.type in ("cpu", "cuda") and backend != "onnxruntime"
    elif channels_last and backend == "onnxruntime":
        raise ConfigError("the onnxruntime backend takes NCHW inputs (it picks its own layout); drop channels_last")
    start = time.perf_counter()
    prepared = fuse_conv_bn(model) if fold_bn else copy.deepcopy(model).eval()
    prepared = prepared.to(device=device, dtype=dtype)
    if channels_last:
        prepared = prepared.to(memory_format=torch.channels_last)
    for parameter in prepared.parameters():
        parameter.requires_grad_(False)
    choices = {
        "device": str(device),
        "precision": "bf16" if dtype == torch.bfloat16 else "fp32",
        "precision_reason": reason,
        "channels_last": channels_last,
        "folded_batchnorms": getattr(prepared, "folded_batchnorms", 0),
        "backend": backend,
        "backend_reason": backend_reason,
        "plain": not fold_bn and not channels_last and dtype == torch.float32 and backend == "eager",
    }
    wrapper = InferenceModel(prepared, device, dtype, channels_last, choices).eval()
    if backend == "compile":
        # Inductor's freezing makes the weights constants: oneDNN's prepacked weights on the CPU, constant folding
        # once. Compiles on the first call (and once more, with dynamic shapes, when the input shape first changes).
        object.__setattr__(wrapper, "runner", torch.compile(prepared, options={"freezing": True}))
    elif backend == "onnxruntime":
        runner = _onnxruntime(prepared, example, auto=backend_reason != "requested", choices=choices)
        object.__setattr__(wrapper, "runner", runner)
    choices["setup_seconds"] = round(time.perf_counter() - start, 3)  # compile time comes with the first call
    return wrapper


def _onnxruntime(
    model: nn.Module, example: torch.Tensor | None, auto: bool, choices: dict[str, Any]
) -> OnnxRuntimeRunner | None:
    """The ONNX Runtime runner; under ``backend="auto"`` a model the exporter cannot trace runs eager instead."""
    try:
        return OnnxRuntimeRunner(model, example if example is not None else example_input(model))
    except Exception as error:  # the exporter's failures are many and version-dependent
        if not auto:
            raise ConfigError(
                f"the onnxruntime backend could not export this model ({type(error).__name__}: {error}); "
                "use --backend eager"
            ) from error
        choices["backend"], choices["backend_reason"] = "eager", f"eager: the ONNX export failed ({error})"
        return None


def _measured(
    model: nn.Module,
    device: torch.device,
    precision: str,
    backend: str,
    example: torch.Tensor | None,
    batch_shape: tuple[int, ...],
    work_images: int | None,
    retune: bool,
) -> InferenceModel:
    """The automatic choice timed on this machine: each candidate is prepared once, and the winner is kept."""
    from resnet.runtime import measured

    dtype, reason = inference_precision(precision, device, backend)
    rule_name = f"{'bf16' if dtype == torch.bfloat16 else 'fp32'} {resolve_backend(backend, device, dtype)[0]}"
    onnx = None  # the version of ONNX Runtime, when it can run here (a candidate, and part of the cache key)
    if onnxruntime_missing() is None:
        import onnxruntime

        onnx = str(onnxruntime.__version__)
    options: dict[str, tuple[str, str]] = {}
    for name in ("fp32", "bf16"):
        if precision in ("auto", name) and (name == "fp32" or _has_bf16(device)):
            options[f"{name} eager"] = (name, "eager")
    if backend == "auto" and device.type == "cpu" and precision in ("auto", "fp32") and onnx:
        options["fp32 onnxruntime"] = ("fp32", "onnxruntime")
    if backend not in ("auto", "eager"):
        options = {name: value for name, value in options.items() if value[1] == backend}
    built: dict[str, InferenceModel] = {}

    def prepared(name: str) -> InferenceModel:
        if name not in built:
            dtype_name, runner = options[name]
            built[name] = prepare_for_inference(model, device, precision=dtype_name, backend=runner, example=example)
        return built[name]

    def candidate(name: str) -> measured.Step:
        images, wrapper = torch.randn(batch_shape, device=device), prepared(name)
        return lambda: wrapper(images)

    key = measured.cache_key(
        "inference",
        device,
        model=f"{type(model).__name__} {sum(p.numel() for p in model.parameters())}",
        batch=list(batch_shape),
        onnxruntime=onnx,
        asked=[precision, backend],
    )
    calls = None if work_images is None else -(-work_images // max(1, batch_shape[0]))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
        decision = measured.decide(
            key,
            measured.Decision(rule_name, "rule", reason=reason),
            {name: functools.partial(candidate, name) for name in options},
            batch_shape[0],
            calls,
            retune=retune,
            sync=sync,
            on_cpu=device.type == "cpu",
        )
    if decision.source == "rule" or decision.choice not in options:
        return prepare_for_inference(model, device, precision=precision, backend=backend, example=example)
    chosen = prepared(decision.choice)
    chosen.choices["precision_reason"], chosen.choices["backend_reason"] = decision.describe(), ""
    chosen.choices["measured"] = decision.to_dict()
    return chosen


def _has_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    from resnet.runtime.measured import cpu_bf16_kernels

    return device.type == "cpu" and cpu_bf16_kernels()


def folded_copy(model: nn.Module, device: torch.device, channels_last: bool) -> InferenceModel:
    """A BN-folded fp32 copy for evaluating a model in training (autocast, if any, stays the caller's)."""
    return prepare_for_inference(model, device, precision="fp32", channels_last=channels_last)


def describe(choices: dict[str, Any]) -> str:
    """One line for logs: what the inference path chose and why."""
    if choices.get("plain"):
        return f"{choices['device']} (plain: the eval-mode model as trained, fp32 NCHW, eager)"
    parts = [choices["precision"], "channels-last" if choices["channels_last"] else "NCHW"]
    parts.append(f"{choices['folded_batchnorms']} BN folded")
    backend = choices.get("backend", "eager")
    parts.append({"compile": "torch.compile", "onnxruntime": "ONNX Runtime"}.get(backend, backend))
    reasons = [choices["precision_reason"]]
    if choices.get("backend_reason", "requested") not in ("requested", ""):
        reasons.append(choices["backend_reason"])
    return f"{choices['device']} ({', '.join(parts)}); {'; '.join(reasons)}"
