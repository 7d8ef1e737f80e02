"""Exclusive ownership of a run directory: one training process at a time.

Two runs writing the same directory interleave ``metrics.jsonl`` and overwrite each other's checkpoints, so a run
holds ``run.lock`` (an OS lock on a file that records its pid, host and start time) from setup to exit. The OS
releases the lock when the process dies however it dies (even SIGKILL), so a lock file left behind by a dead run
is recognised as stale and taken over. Where ``fcntl`` is missing, the pid recorded in the file decides.

Only the process that writes files (rank 0 under DDP) should take the lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from resnet.errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = "run.lock"


class RunDirLockedError(ConfigError):
    """Another live process is training in this run directory."""


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs on this host; a zombie (killed, not yet reaped by its parent) counts as ended."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): the signal probe has said it exists


def _read_owner(path: Path) -> dict[str, Any]:
    try:
        owner = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _describe(owner: dict[str, Any]) -> str:
    if not owner:
        return "another process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("started", 0)))
    return f"process {owner.get('pid', '?')} on {owner.get('host', '?')} (started {started})"


class RunLock:
    """``with RunLock(run_dir): ...`` or ``acquire()`` / ``release()``; re-acquiring in the same process is an error."""

    def __init__(
        self, run_dir: str | Path, *, file: str = LOCK_FILE, what: str = "run", option: str = "--run-dir"
    ) -> None:
        self.path = Path(run_dir) / file
        self.what, self.option = what, option  # named in the refusal: "experiment folder ... choose another --out"
        self._fd: int | None = None
        self.stale_owner: dict[str, Any] | None = None  # the dead run whose lock file was taken over, if any

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunDirLockedError` naming the process that holds it."""
        if self._fd is not None:
            return self
        for _ in range(20):  # the file may be unlinked by its releasing owner between our open and our lock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if not self._lock(fd):
                    owner = _read_owner(self.path)
                    raise RunDirLockedError(
                        f"{self.what} {'directory' if self.what == 'run' else 'folder'} '{self.path.parent}' is in use "
                        f"by {_describe(owner)}; wait for that {self.what} to finish (or stop it), or choose another "
                        f"{self.option}"
                    )
                if not self._same_file(fd):
                    os.close(fd)
                    continue
                previous = _read_owner(self.path)
                if previous.get("pid") and previous.get("pid") != os.getpid():
                    self.stale_owner = previous  # a dead run's lock (the OS had released it)
                self._write_owner(fd)
                self._fd = fd
                return self
            except BaseException:
                if self._fd is None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                raise
        raise RunDirLockedError(f"could not lock '{self.path}': it keeps being replaced; is another run starting?")

    def _lock(self, fd: int) -> bool:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True
        owner = _read_owner(self.path)  # pragma: no cover - no fcntl: trust the recorded pid
        return not (owner.get("pid") and owner.get("pid") != os.getpid() and process_alive(int(owner["pid"])))

    def _same_file(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def _write_owner(self, fd: int) -> None:
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self._fd)  # closing drops the flock
        self._fd = None

    def moved(self, directory: Path) -> None:
        """The locked directory was renamed to ``directory`` (under the lock): release then removes the right file."""
        self.path = Path(directory) / self.path.name

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
