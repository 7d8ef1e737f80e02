"""The one runtime choice of every command: device, mixed precision, memory format, compilation and threads.

Train, eval, predict and the benchmarks resolve their device and precision here, with the same rules and errors.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from resnet.config.schema import SystemConfig
from resnet.errors import ConfigError

PRECISIONS: dict[torch.dtype | None, str] = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # None: full precision
    channels_last: bool
    compile: bool
    sync_every: int  # iterations between host syncs (NaN check, progress)
    amp_reason: str = ""  # why this precision: printed at the start of a run and saved in summary.json

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

    @property
    def precision(self) -> str:
        return PRECISIONS[self.amp_dtype]

    def describe(self) -> str:
        name = torch.cuda.get_device_name(self.device) if self.is_cuda else self.device.type
        extras = [self.precision] + ["channels-last"] * self.channels_last + ["compiled"] * self.compile
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
        raise ConfigError(f"unknown device '{choice}': use auto, cpu, cuda, cuda:N or mps") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{choice}' requested but CUDA is not available here; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device '{choice}' requested but this machine has {torch.cuda.device_count()} GPU(s); "
            "use cuda:0 ... or --device auto"
        )
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"device '{choice}' requested but Apple's MPS is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device '{choice}' is not supported: use auto, cpu, cuda, cuda:N or mps")
    return device


# CPU flags (as /proc/cpuinfo spells them) that give native bf16 dot products to oneDNN's convolutions and GEMMs.
# Without them bf16 is emulated through fp32 and runs slower than plain fp32.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags: torch's own cpuinfo probes where it has them, plus ``/proc/cpuinfo`` on Linux."""
    flags: set[str] = set()
    probes = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_bf16": "_is_amx_tile_supported"}
    for flag, probe in probes.items():
        check = getattr(torch.cpu, probe, None)
        with contextlib.suppress(Exception):
            if check is not None and check():
                flags.add(flag)
    with contextlib.suppress(OSError):
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("flags"):
                flags.update(line.partition(":")[2].split())
                break
    return flags


def cpu_bf16_choice() -> tuple[bool, str]:
    """(whether ``--amp auto`` uses bf16 on this CPU, why) from the CPU's flags and torch's CPU capability."""
    capability = torch.backends.cpu.get_cpu_capability()
    native = sorted(set(NATIVE_BF16_FLAGS) & cpu_flags())
    if native:
        return True, f"bf16 autocast: the CPU has native bf16 ({', '.join(native)}; torch kernels {capability})"
    return False, (
        f"fp32: the CPU has no native bf16 (no avx512_bf16 or AMX; torch kernels {capability}), "
        "where bf16 would be emulated and slower"
    )


def resolve_amp(amp: str, device: torch.device) -> tuple[torch.dtype | None, str]:
    """The autocast dtype (None: fp32) for ``--amp`` on ``device``, and the reason printed with the run."""
    if amp == "off":
        return None, "fp32: --amp off"
    if amp == "bf16":
        reason = "bf16 autocast: --amp bf16"
        if device.type == "cpu" and not cpu_bf16_choice()[0]:
            reason += " (this CPU has no native bf16: expect it to run slower than fp32)"
        return torch.bfloat16, reason
    if amp == "fp16":
        if device.type == "cpu":
            raise ConfigError("fp16 autocast needs a GPU; on the CPU use --amp bf16 or off")
        return torch.float16, "fp16 autocast with loss scaling: --amp fp16"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "bf16 autocast: the GPU supports bf16"
        return None, "fp32: the GPU has no bf16 (use --amp fp16 for mixed precision)"
    if device.type == "cpu":
        use_bf16, reason = cpu_bf16_choice()
        return (torch.bfloat16 if use_bf16 else None), reason
    return None, f"fp32: --amp auto keeps {device.type} in full precision"


# From this many iterations on, a CPU run under --compile auto measures whether compiling its step pays: a first
# compilation and its measurement take 1-2 minutes, 5-8% of a 2,000-iteration ResNet-20 run on 2 AVX2 cores and
# under 5% from 4,000 (docs/performance.md); shorter runs (the 2-epoch demo) stay eager.
COMPILE_MIN_ITERATIONS = 4000


def has_cpp_compiler() -> bool:
    """Inductor builds its CPU kernels with a C++ compiler: ``$CXX``, g++, clang++ or c++ on PATH."""
    return any(shutil.which(name) for name in (os.environ.get("CXX", ""), "g++", "clang++", "c++") if name)


def compile_choice(choice: str, device: torch.device, iterations: int) -> tuple[bool, str]:
    """Whether the training step is compiled (``--compile`` on/off/auto) for a run of ``iterations``, and why."""
    if choice == "off":
        return False, "eager: --no-compile"
    if device.type == "cpu" and not has_cpp_compiler():
        if choice == "on":
            raise ConfigError(
                "torch.compile on the CPU needs a C++ compiler (g++ or clang++ on PATH, or $CXX); install one, "
                "or drop --compile"
            )
        return False, "eager: no C++ compiler found, which torch.compile needs on the CPU (install g++ to compile)"
    if choice == "on":
        return True, "compiled: --compile"
    if device.type == "cuda":
        return True, "compiled: torch.compile on the GPU"
    if device.type == "cpu" and iterations >= COMPILE_MIN_ITERATIONS:
        return True, f"compiled: a CPU run of {iterations} iterations repays the compile time"
    return False, f"eager: --compile auto compiles CPU runs of {COMPILE_MIN_ITERATIONS}+ iterations and GPU runs"


def resolve_runtime(system: SystemConfig) -> Runtime:
    device = resolve_device(system.device)
    on_gpu = device.type == "cuda"
    amp_dtype, amp_reason = resolve_amp(system.amp, device)
    # Channels-last is faster on GPUs and, measured with oneDNN on 2 CPU cores, ~2x faster for ResNet-20.
    channels_last = device.type in ("cuda", "cpu") if system.channels_last == "auto" else system.channels_last == "on"
    compile_model = system.compile == "on" or (on_gpu and system.compile == "auto")  # the trainer decides by length
    sync_every = system.sync_every or (1 if device.type == "cpu" else 50)
    if system.threads and device.type == "cpu":
        torch.set_num_threads(system.threads)
    if on_gpu:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(device, amp_dtype, channels_last, compile_model, sync_every, amp_reason)
