"""Measured choices: time each way of running a model on this machine, keep the fastest, remember it.

CPU flags say what a processor *can* do, not what is fastest for a 16-channel 3x3 convolution at batch 128 with
this torch build: on a Xeon with ``avx512_bf16`` and no AMX, bf16 trains ResNet-20 at 0.8x fp32, on one with AMX at
2.5x. So, like ``cudnn.benchmark`` on GPUs, the automatic choices (``--amp auto``, channels-last ``auto``,
``--backend``/``--precision auto`` of eval and predict, ``--jobs auto``) time their candidates for a few steps and
take the fastest. A decision is cached per machine, torch version, model, input shape, batch and threads in
``<cache>/choices.json`` (``$RESNET_CACHE``, ``$XDG_CACHE_HOME/resnet`` or ``~/.cache/resnet``), so that it is
measured once; a run too short to repay the measurement uses the cached decision or the flag rule.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from resnet.data.paths import cache_dir
from resnet.files import write_text_atomic
from resnet.runtime import PRECISIONS, Runtime, compile_choice, cpu_flags

CACHE_FILE = "choices.json"
CACHE_VERSION = 1
# A measurement may cost at most this share of the work it speeds up; shorter work takes the cache or the rule.
MEASURE_SHARE = 0.05
# A candidate whose warm-up already runs this much slower than the best so far is not timed further.
HOPELESS = 3.0
WARMUP, CALLS, ROUNDS = 2, 3, 2  # what a measurement runs of each candidate: warm-up calls, then rounds of calls
# A CPU measurement is cached only if, while its candidates were timed, this process got at least this share of the
# CPU time its threads could use: beside other work the ratio is noise (beside tests and a two-process experiment, a
# compiled ResNet-20 step once "measured" 1.9x the eager one, which is 0.98-1.16x on the same idle machine).
QUIET_SHARE = 0.8

Step = Callable[[], object]  # one call of the work being timed (a training step, a forward pass)


def interleaved(blocks: Mapping[str, Callable[[], float]], repeats: int, label: str = "") -> dict[str, list[float]]:
    """Run each block ``repeats`` times in ABBA order, so that a load that drifts hits every block alike; return
    every block's results (one float per call). The choices here and `resnet benchmark` time their candidates so."""
    names = list(blocks)
    results: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            results[name].append(blocks[name]())
            if label:
                print(f"    {label} {name} block {r + 1}/{repeats}: {results[name][-1]:,.4g}", flush=True)
    return results


def throughput_block(
    step: Step,
    calls: int,
    images_per_call: int,
    sync: Callable[[], None] = lambda: None,
    timer: Callable[[], float] = time.perf_counter,
) -> Callable[[], float]:
    """A block of ``calls`` calls of ``step`` timed as a whole, between device syncs: images/s."""

    def block() -> float:
        sync()
        start = timer()
        for _ in range(calls):
            step()
        sync()
        return images_per_call * calls / max(timer() - start, 1e-9)

    return block


@dataclass(frozen=True)
class Decision:
    """Which candidate runs, and the evidence: measured images/s per candidate, or why none was measured."""

    choice: str
    source: str  # measured | cached | rule | resumed | requested
    rates: dict[str, float] = field(default_factory=dict)
    reason: str = ""  # for a rule or a request: why this candidate

    def describe(self) -> str:
        """``fp32 channels-last — measured 712 img/s against bf16 channels-last 587 img/s``."""
        if not self.rates:
            return f"{self.choice}: {self.reason}" if self.reason else self.choice
        others = [f"{name} {rate:,.0f} img/s" for name, rate in self.rates.items() if name != self.choice]
        mine = self.rates.get(self.choice)
        text = f"{self.choice} — measured {mine:,.0f} img/s" if mine else f"{self.choice} — measured"
        if others:
            text += " against " + ", ".join(others)
        origin = {"cached": "cached on this machine; --retune measures again", "resumed": "the run's own choice"}
        notes = ([origin[self.source]] if self.source in origin else []) + ([self.reason] if self.reason else [])
        return text + (f" ({'; '.join(notes)})" if notes else "")

    def to_dict(self) -> dict[str, Any]:
        return {"choice": self.choice, "source": self.source, "rates": dict(self.rates), "reason": self.reason}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any], source: str | None = None) -> Decision:
        rates = {str(k): float(v) for k, v in dict(value.get("rates") or {}).items()}
        return cls(str(value["choice"]), source or str(value.get("source", "")), rates, str(value.get("reason", "")))


def measure(
    candidates: Mapping[str, Callable[[], Step]],
    images_per_call: int,
    *,
    warmup: int = WARMUP,
    calls: int = CALLS,
    rounds: int = ROUNDS,
    timer: Callable[[], float] = time.perf_counter,
    sync: Callable[[], None] = lambda: None,
    cpu_clock: Callable[[], float] = time.process_time,
) -> tuple[dict[str, float], float]:
    """Images/s of each candidate: ``candidates[name]()`` builds its step (set-up not timed), which is warmed up,
    then timed ``calls`` times per round; rounds alternate between candidates (:func:`interleaved`) so that a
    passing load hits all alike, and each keeps its best round. A candidate whose warm-up is hopelessly slow (or
    that fails) is dropped early. Also returns the share of its threads' CPU time this process got while timing
    (``cpu_clock`` over ``timer``): well under 1 on a CPU means other work competed for the cores."""
    steps: dict[str, Step] = {}
    best_call: float | None = None
    for name, build in candidates.items():
        try:
            step = build()
            start = timer()
            for _ in range(warmup):
                step()
            sync()
            per_call = (timer() - start) / max(1, warmup)
        except (RuntimeError, NotImplementedError, ValueError):  # a kernel missing for this dtype or layout
            continue
        if best_call is not None and per_call > HOPELESS * best_call:
            continue
        best_call = per_call if best_call is None else min(best_call, per_call)
        steps[name] = step
    blocks = {name: throughput_block(step, calls, images_per_call, sync, timer) for name, step in steps.items()}
    wall, cpu = timer(), cpu_clock()
    rates = {name: max(rates) for name, rates in interleaved(blocks, rounds).items()}
    share = (cpu_clock() - cpu) / max(timer() - wall, 1e-9) / max(1, torch.get_num_threads())
    return rates, share


def fastest(rates: Mapping[str, float], handicap: Mapping[str, float] | None = None) -> str:
    """The candidate with the highest rate, each divided by its handicap (a factor it must win by)."""
    handicap = handicap or {}
    return max(rates, key=lambda name: rates[name] / handicap.get(name, 1.0))


def worth_measuring(candidates: int, work_calls: int) -> bool:
    """Whether timing the candidates costs at most ``MEASURE_SHARE`` of ``work_calls`` calls of the work (at most,
    as a hopeless candidate stops after its warm-up)."""
    return candidates > 1 and candidates * (WARMUP + CALLS * ROUNDS) <= MEASURE_SHARE * work_calls


# ---- the machine and the cache ----------------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), for reports and cache keys."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> str:
    """What decides speed on ``device``: the GPU's name, or the CPU's model and a digest of its flags."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    flags = hashlib.sha256(" ".join(sorted(cpu_flags())).encode()).hexdigest()[:12]
    return f"{device.type}: {cpu_model()} ({os.cpu_count()} cores, flags {flags})"


def cache_key(kind: str, device: torch.device, **fields: Any) -> dict[str, Any]:
    """Everything a decision depends on: the machine, the software, and what the caller names (model, shape...)."""
    return {
        "kind": kind,
        "machine": machine(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        **{name: fields[name] for name in sorted(fields)},
    }


class ChoiceCache:
    """Decisions on disk, one JSON file; anything unreadable, stale or of another version is ignored with a
    warning, and a cache that cannot be written costs a remeasurement next time, never the run."""

    def __init__(self, path: Path | None = None, warn: Callable[[str], None] | None = None) -> None:
        self.path = path or cache_dir() / CACHE_FILE
        self.warn = warn or (lambda text: print(f"warning: {text}", file=sys.stderr))

    @staticmethod
    def _digest(key: Mapping[str, Any]) -> str:
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def _entries(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
            if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
                version = data.get("version") if isinstance(data, dict) else "?"
                raise ValueError(f"written by another version ({version})")
            entries = data.get("entries")
            if not isinstance(entries, dict):
                raise ValueError("no entries")
            return entries
        except (OSError, ValueError, UnicodeDecodeError) as error:
            self.warn(f"ignoring the cache of measured choices {self.path} ({error}); measuring again")
            return {}

    def get(self, key: Mapping[str, Any]) -> Decision | None:
        entry = self._entries().get(self._digest(key))
        if not isinstance(entry, dict) or entry.get("key") != json.loads(json.dumps(key, default=str)):
            return None
        try:
            return Decision.from_dict(entry["decision"], source="cached")
        except (KeyError, TypeError, ValueError):
            self.warn(f"ignoring a damaged entry of {self.path}; measuring again")
            return None

    def put(self, key: Mapping[str, Any], decision: Decision) -> None:
        entries = self._entries()
        entries[self._digest(key)] = {"key": key, "decision": decision.to_dict(), "measured_at": time.time()}
        text = json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=1, default=str)
        try:
            write_text_atomic(self.path, text)
        except OSError as error:
            self.warn(f"could not keep the measured choice in {self.path} ({error}); it will be measured again")


def decide(
    key: Mapping[str, Any],
    rule: Decision,
    candidates: Mapping[str, Callable[[], Step]],
    images_per_call: int,
    work_calls: int | None,
    *,
    retune: bool = False,
    cache: ChoiceCache | None = None,
    sync: Callable[[], None] = lambda: None,
    label: str = "",
    handicap: Mapping[str, float] | None = None,
    on_cpu: bool = True,
) -> Decision:
    """The cached decision, else a measurement when the work repays it (``work_calls`` calls, None: unknown),
    else ``rule``. A single candidate is the rule's. ``retune`` measures again whatever the cache holds. A
    ``label`` is announced on stderr before a measurement, which may take a while (a compilation); a
    ``handicap`` names candidates that must win by a factor (one that costs more than its steps). A CPU
    measurement taken while other work competed for the cores (``QUIET_SHARE``) decides this run only."""
    if len(candidates) <= 1 or rule.choice not in candidates:
        return rule
    cache = cache or ChoiceCache()
    if not retune:
        cached = cache.get(key)
        if cached is not None and cached.choice in candidates:
            return cached
    if not retune and (work_calls is None or not worth_measuring(len(candidates), work_calls)):
        return rule
    if label:
        print(
            f"measuring {label}: {', '.join(candidates)} (cached afterwards in {cache.path} unless other work competes "
            "for the CPU meanwhile)",
            file=sys.stderr,
        )
    rates, share = measure(candidates, images_per_call, sync=sync)
    if not rates:
        return rule
    needs = [f"{name} must measure {factor - 1:.0%} faster" for name, factor in (handicap or {}).items()]
    decision = Decision(fastest(rates, handicap), "measured", rates, "; ".join(needs))
    return remember(cache, key, decision, share if on_cpu else 1.0, label or ", ".join(rates))


def remember(cache: ChoiceCache, key: Mapping[str, Any], decision: Decision, share: float, what: str) -> Decision:
    """Cache a measured ``decision`` if its CPU ``share`` says the machine was quiet; else it decides this run only,
    said in one warning line and in its reason."""
    if share >= QUIET_SHARE:
        cache.put(key, decision)
        return decision
    cache.warn(
        f"other work competed for the CPU while measuring {what} (this process got {share:.0%} of its threads' "
        "CPU time): the choice holds for this run only and is measured again next time"
    )
    busy = f"measured on a busy CPU ({share:.0%} of its share): not cached"
    return dataclasses.replace(decision, reason="; ".join(filter(None, [decision.reason, busy])))


# ---- training: precision x memory layout ------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    """The training a decision is for: what keys it (model, batch shape, world size) and what it must repay."""

    model_name: str
    batch: tuple[int, ...]  # the input of one step, per rank: (images, channels, height, width)
    num_classes: int
    iterations: int  # the steps still to run: a measurement costs at most MEASURE_SHARE of them
    world_size: int = 1


def layout_name(channels_last: bool) -> str:
    return "channels-last" if channels_last else "NCHW"


def training_candidates(system: Any, device: torch.device, rule: Runtime) -> dict[str, tuple[torch.dtype | None, bool]]:
    """Name -> (autocast dtype, channels-last) for every setting ``--amp``/``channels_last`` leave open here: an
    explicit flag fixes its half; bf16 only where oneDNN (CPU) or the GPU has bf16 kernels; fp16 on GPUs."""
    dtypes: list[torch.dtype | None] = [rule.amp_dtype]
    if system.amp == "auto":
        if device.type == "cuda":
            dtypes = [None, torch.float16] + ([torch.bfloat16] if torch.cuda.is_bf16_supported() else [])
        elif device.type == "cpu":
            dtypes = [None] + ([torch.bfloat16] if cpu_bf16_kernels() else [])
    layouts = [rule.channels_last]
    if system.channels_last == "auto" and device.type in ("cpu", "cuda"):
        layouts = [True, False]
    return {f"{PRECISIONS[dtype]} {layout_name(layout)}": (dtype, layout) for dtype in dtypes for layout in layouts}


def cpu_bf16_kernels() -> bool:
    """Whether oneDNN has bf16 kernels here (native or through AVX-512): without them bf16 is not worth timing."""
    with contextlib.suppress(Exception):
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def training_step(
    model: torch.nn.Module,
    device: torch.device,
    dtype: torch.dtype | None,
    channels_last: bool,
    batch: tuple[int, ...],
    num_classes: int,
    compiled: bool = False,
) -> Step:
    """One SGD update of a private copy of ``model`` on a random batch: what a training iteration costs in this
    precision and layout, eager or compiled (the compilation is done here, in the untimed set-up). The copy, its
    optimizer and the batch are the measurement's own, so the run's weights, statistics and random streams are
    untouched."""
    import copy

    replica = copy.deepcopy(model).to(device).train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    replica = replica.to(memory_format=memory_format)
    forward = torch.compile(replica, dynamic=False) if compiled else replica  # as the trainer compiles its step
    optimizer = torch.optim.SGD(replica.parameters(), lr=1e-4, momentum=0.9)
    images = torch.randn(batch, device=device).contiguous(memory_format=memory_format)
    labels = torch.randint(0, num_classes, (batch[0],), device=device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(forward(images), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    if compiled:
        step()  # the compilation: part of the set-up, so that the warm-up times a compiled step
    return step


def decide_training(
    rule: Runtime,
    system: Any,
    model: torch.nn.Module,
    work: Workload,
    cache: ChoiceCache | None = None,
) -> tuple[Runtime, Decision]:
    """The runtime to train with: ``rule`` (the flag rule of ``resolve_runtime``) with its precision and layout
    replaced by the fastest measured candidate, when the settings leave them open."""
    candidates = training_candidates(system, rule.device, rule)
    rule_name = f"{rule.precision} {layout_name(rule.channels_last)}"
    if len(candidates) <= 1:  # nothing left open: say why the precision is what it is ("--amp off", the flags...)
        return rule, Decision(rule_name, "requested", reason=rule.amp_reason.partition(": ")[2] or rule.amp_reason)
    key = cache_key("train", rule.device, model=work.model_name, batch=list(work.batch), world_size=work.world_size)
    sync = torch.cuda.synchronize if rule.is_cuda else (lambda: None)
    with torch.random.fork_rng(devices=[rule.device] if rule.is_cuda else []):
        factories = {
            name: (lambda d=dtype, cl=layout: training_step(model, rule.device, d, cl, work.batch, work.num_classes))
            for name, (dtype, layout) in candidates.items()
        }
        decision = decide(
            key,
            Decision(rule_name, "rule", reason=rule.amp_reason),
            factories,
            work.batch[0],
            work.iterations,
            retune=bool(getattr(system, "retune", False)),
            cache=cache,
            sync=sync,
            label="the precision and layout",
            on_cpu=rule.device.type == "cpu",
        )
    return apply_training(rule, decision), decision


def apply_training(rule: Runtime, decision: Decision) -> Runtime:
    """``rule`` running ``decision``'s candidate; the printed reason is the decision's evidence."""
    if decision.source == "rule":
        return rule
    dtype, layout = parse_training_choice(decision.choice)
    return dataclasses.replace(rule, amp_dtype=dtype, channels_last=layout, amp_reason=decision.describe())


def parse_training_choice(name: str) -> tuple[torch.dtype | None, bool]:
    """``"bf16 NCHW"`` -> (torch.bfloat16, False): a saved decision read back on resume."""
    precision, _, layout = name.partition(" ")
    dtypes = {text: dtype for dtype, text in PRECISIONS.items()}
    if precision not in dtypes or layout not in ("channels-last", "NCHW"):
        raise ValueError(f"not a training choice: {name!r}")
    return dtypes[precision], layout == "channels-last"


# ---- training: compiled or eager --------------------------------------------------------------------------------
# The compiled step must measure this much faster to be chosen: two measurements of the same ResNet-20 steps on an
# idle AVX2 EPYC differed by 5% (compiled 1.05x, then 0.98x of eager), and a tie should not cost a compilation.
COMPILE_MARGIN = 1.05


def compile_rule(system: Any, device: torch.device, iterations: int) -> Decision:
    """``compile_choice`` as a decision: what runs where nothing is measured."""
    compiled, reason = compile_choice(system.compile, device, iterations)
    source = "rule" if system.compile == "auto" else "requested"
    return Decision("compiled" if compiled else "eager", source, reason=reason.partition(": ")[2])


def decide_compile(
    runtime: Runtime,
    system: Any,
    model: torch.nn.Module,
    work: Workload,
    cache: ChoiceCache | None = None,
) -> Decision:
    """Whether the training step is compiled. ``--compile auto`` on a CPU run long enough to repay a compilation
    (the rule of ``compile_choice``) times the compiled step against the eager one, in the precision and layout
    already chosen, and keeps the faster: inductor's CPU kernels beat eager on one AVX2 EPYC by 1.11x and lose on
    another by 0.98x. Elsewhere (GPUs, short runs, ``--compile``/``--no-compile``, no C++ compiler) the rule holds."""
    rule = compile_rule(system, runtime.device, work.iterations)
    if system.compile != "auto" or runtime.device.type != "cpu" or rule.choice != "compiled":
        return rule
    key = cache_key(
        "compile", runtime.device, model=work.model_name, batch=list(work.batch), world_size=work.world_size,
        precision=runtime.precision, layout=layout_name(runtime.channels_last),
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        factories = {
            name: (
                lambda c=(name == "compiled"): training_step(
                    model, runtime.device, runtime.amp_dtype, runtime.channels_last, work.batch, work.num_classes, c
                )
            )
            for name in ("eager", "compiled")
        }
        retune = bool(getattr(system, "retune", False))
        label = "the compiled training step against the eager one (a first compilation may take minutes)"
        return decide(
            key, rule, factories, work.batch[0], work.iterations, retune=retune, cache=cache, label=label,
            handicap={"compiled": COMPILE_MARGIN},
        )  # fmt: skip
