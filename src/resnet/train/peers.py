"""What a rank says when it loses a peer: which rank died, where the run stands, and whether torchrun restarts it.

A SIGKILLed rank reaches the survivors as a gloo/nccl error in whatever collective comes next — or, when torchrun
notices first, as its SIGTERM, which also stops the survivors' DataLoader workers and surfaces as "DataLoader worker
is killed by signal: Terminated" chained to the gloo error. Either way the survivor prints one line naming the dead
rank (found by its process id, for ranks on this host) and whether torchrun's ``--max-restarts`` will continue it:
the helpers of :func:`resnet.train.distributed.guard`, which raises it.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import torch.distributed as dist

from resnet.runs.lock import process_alive

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
