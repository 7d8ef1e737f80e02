"""The inference fast path: BN folded into convolutions, channels-last, bf16 where the hardware has it, compiled
on request.

``prepare_for_inference`` wraps a trained model so that callers (evaluation, prediction, benchmarks) feed ordinary
fp32 NCHW batches and get fp32 logits back, while the work inside runs in the fastest layout and precision that
keeps the predictions: each choice is recorded in ``.choices`` and checked against the plain model in the tests.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from resnet.errors import ConfigError
from resnet.models.fuse import fuse_conv_bn

PRECISIONS = ("auto", "fp32", "bf16")


def inference_precision(precision: str, device: torch.device) -> tuple[torch.dtype, str]:
    """The weight/activation dtype for ``precision`` on ``device`` and why (bf16 only where it is native)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return torch.float32, "fp32 (requested)"
    if precision == "bf16":
        return torch.bfloat16, "bf16 (requested)"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "bf16: the GPU supports it"
        return torch.float32, "fp32: the GPU has no bf16"
    if device.type == "cpu":
        from resnet.train.devices import cpu_bf16_choice

        native, reason = cpu_bf16_choice()
        return (torch.bfloat16, "bf16: " + reason) if native else (torch.float32, reason)
    return torch.float32, f"fp32 on {device.type}"


class InferenceModel(nn.Module):
    """A prepared model: takes fp32 images in any layout on any device, returns fp32 outputs."""

    def __init__(
        self, model: nn.Module, device: torch.device, dtype: torch.dtype, channels_last: bool, choices: dict[str, Any]
    ) -> None:
        super().__init__()
        self.model = model
        self.device = device
        self.dtype = dtype
        self.channels_last = channels_last
        self.choices = choices
        self.compiled: Any = None  # torch.compile's wrapper of ``model`` (kept out of the module tree)

    def forward(self, images: torch.Tensor) -> Any:
        memory_format = torch.channels_last if self.channels_last and images.dim() == 4 else torch.preserve_format
        images = images.to(self.device, self.dtype, non_blocking=True, memory_format=memory_format)
        out = (self.compiled or self.model)(images)
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
    compile: bool = False,
) -> InferenceModel:
    """A fast inference copy of ``model`` (the original is left untouched).

    ``precision="auto"`` uses bf16 on GPUs and on CPUs with native bf16 (avx512_bf16/AMX), fp32 elsewhere;
    ``channels_last=None`` turns it on for CPU and CUDA (oneDNN and cuDNN are faster in NHWC); ``compile``
    runs ``torch.compile`` (worth it for long jobs: benchmarks/run.py measures whether it pays on a machine).
    """
    device = torch.device(device)
    dtype, reason = inference_precision(precision, device)
    if channels_last is None:
        channels_last = device.type in ("cpu", "cuda")
    prepared = fuse_conv_bn(model) if fold_bn else _eval_copy(model)
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
        "compiled": compile,
    }
    wrapper = InferenceModel(prepared, device, dtype, channels_last, choices).eval()
    if compile:
        object.__setattr__(wrapper, "compiled", torch.compile(prepared))
    return wrapper


def folded_copy(model: nn.Module, device: torch.device, channels_last: bool) -> InferenceModel:
    """A BN-folded fp32 copy for evaluating a model in training (autocast, if any, stays the caller's)."""
    return prepare_for_inference(model, device, precision="fp32", channels_last=channels_last)


def describe(choices: dict[str, Any]) -> str:
    """One line for logs: what the fast path chose."""
    parts = [choices["precision"], "channels-last" if choices["channels_last"] else "NCHW"]
    parts.append(f"{choices['folded_batchnorms']} BN folded")
    if choices["compiled"]:
        parts.append("compiled")
    return f"{choices['device']} ({', '.join(parts)}); {choices['precision_reason']}"


def _eval_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).eval()
