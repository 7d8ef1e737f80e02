"""The one place that knows about ranks: process group, device per rank, reductions, DDP wrapping, failures.

A run started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) trains with DistributedDataParallel: nccl on
GPUs (one per rank, by ``LOCAL_RANK``), gloo on the CPU. Anything else — a plain process, or torchrun with one
process — gets :data:`SINGLE`, whose helpers are no-ops, so that the single-process trainer is unchanged.

Rules the trainer follows through this module:

- Rank 0 alone writes (run directory, checkpoints, plots); the other ranks get a :class:`PassiveRunDir`.
- Decisions that must agree on every rank (resume or not, the checkpoint, the metrics so far, errors such as an
  occupied run directory) are taken on rank 0 and broadcast (:meth:`DistContext.on_main`).
- The global batch is ``batch_size x world_size``; a checkpoint keeps its global batch when resumed at another
  world size, so the data position (images seen) and the schedule carry over unchanged.
- Collectives wait at most ``distributed.timeout`` seconds once training runs (``setup_timeout`` before), and a
  lost peer becomes a :class:`~resnet.errors.DistributedError` naming the rank, the iteration and how to resume.

A SIGKILLed rank reaches the survivors as a gloo/nccl error in whatever collective comes next — or, when torchrun
notices first, as its SIGTERM, which also stops the survivors' DataLoader workers and surfaces as "DataLoader worker
is killed by signal: Terminated" chained to the gloo error. Either way the survivor prints one line naming the dead
rank (found by its process id, for ranks on this host) and whether torchrun's ``--max-restarts`` will continue it
(:func:`guard`).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist
from torch import Tensor, nn

from resnet.config import Config
from resnet.errors import ConfigError, DistributedError, ResNetError
from resnet.runs.checkpoint import first_line
from resnet.runs.lock import process_alive
from resnet.runs.run_dir import METRICS_FILE, RunDir
from resnet.runtime import Runtime, resolve_device
from resnet.train.optim.schedules import LinearWarmup, Schedule, scaled_lr

T = TypeVar("T")
_LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# Messages of gloo/nccl/c10d when a peer is gone or silent (they raise plain RuntimeErrors in places).
LOST_PEER = re.compile(r"gloo|nccl|connection|timed out|timeout|peer|socket|broken pipe|watchdog", re.IGNORECASE)
# torchrun's SIGTERM to a survivor reaches its DataLoader workers too: the loader reports them as killed.
WORKERS_TERMINATED = re.compile(r"DataLoader worker \(pid[^)]*\) is killed by signal: Terminated")
EXIT_WAIT_S = 2.0  # a peer that raised may still be printing its traceback when the connection closes


@dataclass(frozen=True)
class Peer:
    """A rank's process: enough to tell, from another rank on the same host, whether it is still alive."""

    host: str  # where its pid means something: see :func:`process_space`
    pid: int


@dataclass
class DistContext:
    """Where this process stands in the run; ``world_size == 1`` makes every helper a no-op."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    timeout: float = 60.0
    owns_group: bool = False  # False when the caller initialised the process group (library use)
    armed: bool = False  # the short training timeout is in force
    peers: tuple[Peer, ...] = ()  # every rank's host and process id, to name the one that died

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce(self, tensor: Tensor, op: str = "sum") -> Tensor:
        """Reduce ``tensor`` in place over the ranks (``sum`` or ``max``) and return it."""
        if self.is_distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        return tensor

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (any picklable object, tensors included)."""
        if not self.is_distributed:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[return-value]

    def on_main(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on rank 0 only and hand its result — or the user error it raised — to every rank."""
        if not self.is_distributed:
            return fn(*args, **kwargs)
        outcome: tuple[str, Any] = ("ok", None)
        if self.is_main:
            try:
                outcome = ("ok", fn(*args, **kwargs))
            except ResNetError as error:
                outcome = ("error", error)
        outcome = self.broadcast(outcome)
        if outcome[0] == "error":
            raise outcome[1]
        return outcome[1]

    def reduce_window(self, window: Tensor, first_bad: Tensor, requests: tuple[int, ...] = ()) -> tuple[int, ...]:
        """Training sums over the global batch, so that progress, NaN stops and schedules agree on every rank;
        ``requests`` (what one rank may see alone: a signal number, the checkpoint clock) come back as their
        maximum over the ranks."""
        if not self.is_distributed:
            return requests
        self.all_reduce(window)
        flags = torch.cat([first_bad.reshape(1), torch.tensor(requests, dtype=first_bad.dtype).to(first_bad.device)])
        self.all_reduce(flags, "max")
        first_bad.copy_(flags[0])
        agreed = tuple(int(flag) for flag in flags[1:].tolist())
        if not self.armed:  # the first step (compilation, worker start-up) is behind us: a short bound from now on
            _set_timeout(self.timeout)
            self.armed = True
        return agreed

    def reducer_for(self, stream: Any) -> Callable[[Tensor], Tensor] | None:
        """For :func:`resnet.eval.evaluate`: sums of this rank's shard -> sums of the whole set. A stream that is
        not sharded (data handed to the trainer) is evaluated whole on every rank, never summed twice."""
        sharded = getattr(stream, "world_size", 1) == self.world_size
        return self.all_reduce if self.is_distributed and sharded else None


SINGLE = DistContext()


def launched_world_size() -> int:
    """``WORLD_SIZE`` as set by torchrun (1 when not launched by it)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError as error:
        raise DistributedError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from error


def _env_int(name: str) -> int:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError) as error:
        raise DistributedError(
            f"WORLD_SIZE is set but {name} is missing or not a number; start distributed runs with torchrun "
            f"(it sets {', '.join(_LAUNCH_VARIABLES)})"
        ) from error


def _set_timeout(seconds: float) -> None:
    try:
        dist.set_timeout(datetime.timedelta(seconds=seconds))
    except (RuntimeError, ValueError) as error:  # pragma: no cover - backends without a settable timeout
        warnings.warn(f"cannot set the collective timeout to {seconds:g} s ({error})", stacklevel=2)


def _attempt_store(timeout: datetime.timedelta) -> dist.Store | None:
    """The agent's store, with a key prefix of its own for every torchrun restart (None: plain ``env://``).

    torchrun keeps one TCP store for every restart of a job (``TORCHELASTIC_USE_AGENT_STORE``), and ``env://``
    joins it without a prefix: after ``--max-restarts`` the new workers would read the keys of the attempt that
    died (gloo's peer addresses, the barrier counters) and wait for processes that no longer exist.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    client = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=timeout)
    return dist.PrefixStore(f"resnet/attempt-{attempt}", client)


def init_distributed(config: Config) -> DistContext:
    """Join the process group torchrun describes (or the one the caller made); :data:`SINGLE` without one."""
    settings = config.distributed
    if dist.is_available() and dist.is_initialized():
        world = dist.get_world_size()
        if world == 1:
            return SINGLE
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if dist.get_backend() == "nccl":
            torch.cuda.set_device(local)
        ctx = DistContext(dist.get_rank(), world, local, dist.get_backend(), settings.timeout, owns_group=False)
        return replace(ctx, peers=exchange(world))
    world = launched_world_size()
    if world <= 1:
        return SINGLE
    if not dist.is_available():  # pragma: no cover - every official build has it
        raise DistributedError("this PyTorch build has no torch.distributed; install an official build")
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if not os.environ.get("MASTER_ADDR"):
        raise DistributedError("MASTER_ADDR is not set; start distributed runs with torchrun")
    _env_int("MASTER_PORT")
    device = resolve_device(config.system.device)
    if device.type == "mps":
        raise ConfigError("distributed training runs on CUDA GPUs (nccl) or CPUs (gloo), not on MPS; use --device cpu")
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) are visible on this node; "
                "use --nproc-per-node at most the number of GPUs per node"
            )
        torch.cuda.set_device(local_rank)
    backend = settings.backend if settings.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
    if backend == "nccl" and device.type != "cuda":
        raise ConfigError("distributed.backend 'nccl' needs GPUs; on the CPU use gloo (the default, 'auto')")
    timeout = datetime.timedelta(seconds=settings.setup_timeout)
    try:
        store = _attempt_store(timeout)
        if store is None:
            dist.init_process_group(backend, rank=rank, world_size=world, timeout=timeout)
        else:
            dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout)
        processes = exchange(world)
    except (RuntimeError, ValueError) as error:
        raise DistributedError(
            f"rank {rank} of {world} could not join the process group at "
            f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({first_line(error)}); "
            "check --rdzv-endpoint / --master-addr and that every node can reach it"
        ) from error
    return DistContext(rank, world, local_rank, backend, settings.timeout, owns_group=True, peers=processes)


def teardown(ctx: DistContext) -> None:
    """Leave the process group this module created (a caller's own group is left alone)."""
    if ctx.owns_group and dist.is_initialized():
        with contextlib.suppress(RuntimeError):
            dist.destroy_process_group()


def place(runtime: Runtime, ctx: DistContext) -> Runtime:
    """One GPU per rank: ``cuda`` becomes ``cuda:LOCAL_RANK``."""
    if ctx.is_distributed and runtime.device.type == "cuda":
        return replace(runtime, device=torch.device("cuda", torch.cuda.current_device()))
    return runtime


def main_first(ctx: DistContext, build: Callable[[], T]) -> T:
    """Rank 0 runs ``build`` first (downloads, tensor caches), then the others, which find it all done — or
    raise the same user error as rank 0 (a missing dataset) instead of losing contact with it."""
    built: list[T] = []  # rank 0's own result: on_main hands the other ranks only that it succeeded
    ctx.on_main(lambda: built.append(build()))
    return built[0] if built else build()


def prepare_model(model: nn.Module, config: Config, ctx: DistContext, device: torch.device) -> nn.Module:
    """``--sync-bn``: batch norm over the global batch (PyTorch's kernels on CUDA, a portable version elsewhere)."""
    if not (ctx.is_distributed and config.distributed.sync_bn):
        return model
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    from resnet.train.sync_bn import convert_sync_batchnorm

    return convert_sync_batchnorm(model)


def check_supported(config: Config, ctx: DistContext) -> None:
    """Options whose files would be written by every rank are refused under torchrun instead of racing."""
    keep = config.checkpoint
    if ctx.is_distributed and (keep.keep_best or keep.average_last):
        raise ConfigError(
            "checkpoint.keep_best / checkpoint.average_last are not supported under torchrun yet; "
            "set them to 0 (last.pt and best.pt are kept by rank 0)"
        )


def wrap_model(model: nn.Module, runtime: Runtime, ctx: DistContext) -> tuple[nn.Module, nn.Module]:
    """``(training forward, evaluation forward)``: DDP for training; evaluation runs on the bare model, because
    each rank evaluates a shard of its own length (DDP's per-forward buffer broadcast would wait on the others)."""
    # dynamic=False: static-shape kernels whatever shapes were seen before (an evaluation batch, an earlier
    # recompile), so a resumed run compiles the very training graph the uninterrupted one ran: exact resume.
    if not ctx.is_distributed:
        forward = cast(nn.Module, torch.compile(model, dynamic=False)) if runtime.compile else model
        return forward, forward
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    ddp = DistributedDataParallel(model, device_ids=device_ids, gradient_as_bucket_view=True)
    if runtime.compile:
        return cast(nn.Module, torch.compile(ddp, dynamic=False)), cast(nn.Module, torch.compile(model, dynamic=False))
    return ddp, model


def resume_at_world_size(config: Config, given: Config, checkpoint: dict[str, Any], ctx: DistContext) -> str | None:
    """Fit a resumed configuration to this launch: the global batch of the checkpoint is kept.

    The per-rank batch becomes ``global batch / world size``, so iterations, the lr, the schedule and the data
    position (images seen) are those of the interrupted run. Returns a note when the world size changed.
    """
    config.distributed.timeout = given.distributed.timeout  # where the run executes may change on resume
    config.distributed.setup_timeout = given.distributed.setup_timeout
    saved_world, accum = int(checkpoint.get("world_size", 1)), config.optim.accum_steps
    if saved_world == ctx.world_size:
        return None
    global_batch = int(checkpoint.get("global_batch", config.data.batch_size * saved_world * accum))
    if global_batch % (ctx.world_size * accum):
        raise ConfigError(
            f"the checkpoint was trained with a global batch of {global_batch} ({saved_world} process(es)); it "
            f"cannot be split over {ctx.world_size} processes: resume with a number of processes that divides it"
        )
    config.data.batch_size = global_batch // (ctx.world_size * accum)
    images = checkpoint.get("images_seen", int(checkpoint["iteration"]) * global_batch)
    return (
        f"resuming a {saved_world}-process run with {ctx.world_size}: global batch {global_batch} kept "
        f"({config.data.batch_size} per process), {images} images seen"
    )


def checkpoint_fields(config: Config, ctx: DistContext, iteration: int) -> dict[str, int]:
    """What a checkpoint records of the launch, so that it resumes at any world size."""
    global_batch = config.data.batch_size * ctx.world_size * config.optim.accum_steps
    return {"world_size": ctx.world_size, "global_batch": global_batch, "images_seen": iteration * global_batch}


def start_lines(config: Config, ctx: DistContext, schedule: Schedule, world_note: str | None) -> list[str]:
    """What a distributed run says at its start (nothing for a single process)."""
    if not ctx.is_distributed:
        return []
    return [line for line in (world_note, describe(config, ctx, schedule)) if line]


def describe(config: Config, ctx: DistContext, schedule: Schedule) -> str:
    """The line a distributed run prints: world size, global batch, lr after the scaling rule, warm-up, BN."""
    batch, accum = config.data.batch_size, config.optim.accum_steps
    global_batch = batch * ctx.world_size * accum
    lr, reference = scaled_lr(config, ctx.world_size), config.optim.reference_batch_size
    per_rank = f"{batch} per process" + (f" x {accum} accumulation steps" if accum > 1 else "")
    text = f"distributed: {ctx.world_size} processes ({ctx.backend}), global batch {global_batch} ({per_rank})"
    if reference:
        text += f", lr {config.optim.lr:g} x {global_batch}/{reference} = {lr:.4g} (linear scaling rule)"
    else:
        text += f", lr {lr:.4g} (not scaled: set optim.reference_batch_size for the linear scaling rule)"
    if isinstance(schedule, LinearWarmup):
        text += f", warm-up over {schedule.iterations} iterations from {schedule.start_factor * lr:.4g}"
    text += ", SyncBatchNorm" if config.distributed.sync_bn else ", batch norm per rank (--sync-bn to synchronise)"
    return text


# ---- a lost peer: which rank died, and whether torchrun restarts the run -----------------------------------------
def process_space() -> str:
    """The host name, boot and pid namespace: two ranks that share it can see each other's process ids (two
    containers named alike on one machine, or two machines named alike, do not)."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return "/".join(parts)


def this_process() -> Peer:
    return Peer(process_space(), os.getpid())


def exchange(world_size: int) -> tuple[Peer, ...]:
    """Every rank's :class:`Peer`, by rank (one collective, at start-up)."""
    gathered: list[Peer | None] = [None] * world_size
    dist.all_gather_object(gathered, this_process())
    return tuple(peer for peer in gathered if peer is not None)


def dead_ranks(peers: tuple[Peer, ...], rank: int, wait_s: float = EXIT_WAIT_S) -> list[int]:
    """The ranks on this host whose process has ended, waiting up to ``wait_s`` for one to end."""
    here = process_space()
    local = [(r, peer.pid) for r, peer in enumerate(peers) if r != rank and peer.host == here]
    deadline = time.monotonic() + wait_s
    while True:
        dead = [r for r, pid in local if not process_alive(pid)]
        if dead or not local or time.monotonic() >= deadline:
            return dead
        time.sleep(0.05)


def restart_note(resumes: bool) -> str:
    """What happens next: torchrun's restart (and whether it can continue this run), or how to continue by hand."""
    try:
        done = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
        allowed = int(os.environ["TORCHELASTIC_MAX_RESTARTS"])
    except (KeyError, ValueError):
        return "continue with --resume auto (torchrun --max-restarts N does it automatically)"
    if done >= allowed:
        return f"torchrun has no restart left (--max-restarts {allowed}); continue with --resume auto"
    if not resumes:
        return (
            f"torchrun restarts the job (restart {done + 1} of {allowed}), but without --resume auto the restart "
            "refuses this run directory: start it with --resume auto"
        )
    return f"torchrun restarts the job (restart {done + 1} of {allowed}) and --resume auto continues it from there"


def lost_contact(error: BaseException) -> bool:
    """Whether ``error``, or one it was raised while handling, is a lost peer."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, getattr(dist, "DistError", ())) or (
            isinstance(current, RuntimeError)
            and (LOST_PEER.search(str(current)) or WORKERS_TERMINATED.search(str(current)))
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


@contextlib.contextmanager
def guard(ctx: DistContext, where: Callable[[], str], resumes: bool) -> Iterator[None]:
    """A lost peer (dead, raised, hung past the timeout) becomes one :class:`DistributedError` line naming the dead
    rank and what torchrun does next (see the module doc)."""
    try:
        yield
    except ResNetError:
        raise
    except RuntimeError as error:
        if not ctx.is_distributed or not lost_contact(error):
            raise
        dead = dead_ranks(ctx.peers, ctx.rank)
        next_step = restart_note(resumes)
        if dead:
            ranks = f"rank {dead[0]}" if len(dead) == 1 else "ranks " + ", ".join(str(r) for r in dead)
            raise DistributedError(
                f"{ranks} of {ctx.world_size} died (rank {ctx.rank} lost contact with it {where()}); {next_step}"
            ) from error
        raise DistributedError(
            f"rank {ctx.rank} of {ctx.world_size} lost contact with another rank {where()}: a rank died, raised or "
            f"hung for over {ctx.timeout:g} s (see its output; {first_line(error)[:160]}); {next_step}; change the "
            "bound with --dist-timeout"
        ) from error


class PassiveRunDir(RunDir):
    """The run directory as seen by ranks other than 0: readable, never written. (Its lock and its creation are
    rank 0's: the trainer calls ``acquire`` and ``create`` through :meth:`DistContext.on_main`, so that every rank
    raises rank 0's refusal; ``release`` has nothing to release elsewhere.)"""

    def append_metrics(self, record: dict[str, Any], name: str = METRICS_FILE) -> None:
        """Rank 0 logs."""

    def truncate_metrics(self, iteration: int) -> None:
        """Rank 0 truncates."""

    def open_tensorboard(self, purge_step: int | None) -> None:
        """Rank 0 writes the events."""

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Rank 0 writes the summary."""


def run_dir_for(ctx: DistContext, path: str | Path) -> RunDir:
    """Rank 0's run directory (its default name has a timestamp) on every rank; passive except on rank 0."""
    path = ctx.broadcast(str(path))
    return RunDir(path) if ctx.is_main else PassiveRunDir(path)
