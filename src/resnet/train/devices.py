"""Device, mixed precision, memory format and compilation choices, with sensible defaults per device."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from resnet.errors import ConfigError
from resnet.train.config import SystemConfig


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # None: full precision
    channels_last: bool
    compile: bool
    sync_every: int  # iterations between host syncs (NaN check, progress)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def needs_grad_scaler(self) -> bool:
        return self.amp_dtype == torch.float16

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def describe(self) -> str:
        name = torch.cuda.get_device_name(self.device) if self.is_cuda else self.device.type
        amp = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]
        extras = [amp] + ["channels-last"] * self.channels_last + ["compiled"] * self.compile
        return f"{name} ({', '.join(extras)})"


def resolve_device(choice: str) -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU."""
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(choice)
    except RuntimeError as error:
        raise ConfigError(f"unknown device '{choice}': use auto, cpu, cuda or cuda:N") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{choice}' requested but CUDA is not available here; use --device cpu or auto")
    return device


def resolve_runtime(system: SystemConfig) -> Runtime:
    device = resolve_device(system.device)
    on_gpu = device.type == "cuda"
    if system.amp == "auto":
        amp_dtype = torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else None
    elif system.amp == "off":
        amp_dtype = None
    elif system.amp == "bf16":
        amp_dtype = torch.bfloat16
    else:
        if device.type == "cpu":
            raise ConfigError("fp16 autocast needs a GPU; on the CPU use --amp bf16 or off")
        amp_dtype = torch.float16
    # Channels-last is faster on GPUs and, measured with oneDNN on 2 CPU cores, ~2x faster for ResNet-20.
    channels_last = device.type in ("cuda", "cpu") if system.channels_last == "auto" else system.channels_last == "on"
    compile_model = on_gpu if system.compile == "auto" else system.compile == "on"
    sync_every = system.sync_every or (1 if device.type == "cpu" else 50)
    if system.threads and device.type == "cpu":
        torch.set_num_threads(system.threads)
    if on_gpu:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(device, amp_dtype, channels_last, compile_model, sync_every)
