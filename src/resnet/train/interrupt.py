"""Ctrl-C and SIGTERM end a run cleanly: the loop checkpoints at the current iteration, then stops.

The first SIGINT/SIGTERM only sets a flag that the training loop reads after each update (so the checkpoint holds
a consistent state, never half an update) and an evaluation before each batch (it is abandoned, and done again on
resume); a second Ctrl-C (SIGINT) restores the default handlers and interrupts at once. A repeated SIGTERM does
not: it comes from machines, not people (an experiment's parent-death signal after its own SIGTERM, a supervisor
stopping everything), and cutting the checkpoint short there lost a net's progress; SIGKILL stops at once.
Handlers can be installed from the main thread only; elsewhere the guard is inert.

Under torchrun the signal is announced when the ranks have agreed to stop, not when it arrives: torchrun also sends
SIGTERM to the survivors when a rank dies, and then no checkpoint can be agreed on; the lost peer's one line
(:func:`resnet.train.distributed.guard`) is what such a rank prints.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import torch.distributed as dist

from resnet.errors import ResNetError, TrainingInterrupted
from resnet.runs import LAST_CHECKPOINT


class Watched(Protocol):
    """What :meth:`InterruptGuard.watch` reads of a run (the trainer)."""

    @property
    def iteration(self) -> int: ...

    saved_iteration: int | None  # the iteration last.pt holds; None: none written
    run_dir: Any


SIGNALS = (signal.SIGINT, signal.SIGTERM)  # both exist on every platform Python runs on, Windows included


class InterruptGuard:
    """Installs the two-step handlers while active; ``requested`` is the first signal received, or None."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self.from_peer = False  # the signal reached another rank of a distributed run, not this process
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:
            if signum == signal.SIGTERM:  # already stopping: the checkpoint is on its way
                return
            self.restore()  # a second Ctrl-C: stop now, without a checkpoint
            raise KeyboardInterrupt
        self.requested = signum
        if not _distributed():
            self._announce()

    def _announce(self) -> None:
        name = signal.Signals(self.requested or signal.SIGINT).name
        print(
            f"\n{name} received: writing a checkpoint at the current iteration, then stopping "
            "(press Ctrl-C again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def agree(self, signum: int) -> bool:
        """Whether to stop now, given the signal the ranks agreed on (0: none); a signal that reached another
        rank stops this one too, with the same exit code."""
        if signum and self.requested is None:
            self.requested, self.from_peer = signum, True
        elif signum and _distributed():
            self._announce()  # this rank received it: said now that every rank stops at this iteration
        return bool(signum)

    def error(
        self, iteration: int, checkpoint: str, run_dir: str, during_evaluation: bool = False
    ) -> TrainingInterrupted:
        """The exception the loop raises once the checkpoint is written (``during_evaluation``: the iteration's
        evaluation was abandoned, and the resumed run does it first)."""
        signum = self.requested or signal.SIGINT
        abandoned = " (its evaluation is left to the resumed run)" if during_evaluation else ""
        return TrainingInterrupted(
            f"stopped by {signal.Signals(signum).name}{' (sent to another rank)' if self.from_peer else ''} at "
            f"iteration {iteration}{abandoned}; checkpoint written to {checkpoint}; "
            f"continue with: resnet train --resume --run-dir {run_dir}",
            signum,
        )

    @contextlib.contextmanager
    def watch(self, run: Watched) -> Iterator[InterruptGuard]:
        """The guard, active, and a step that fails after a signal failed because of it: Ctrl-C and a scheduler's
        SIGTERM reach the whole process group, so torch.compile's C++ compiler dies of it first (a 98-line
        ``CppCompileError``). Such a failure is the signal's one line and exit code."""
        with self:
            try:
                yield self
            except Exception as error:
                stop = self._stop_after(error, run.iteration, run.saved_iteration, run.run_dir.path / LAST_CHECKPOINT)
                if stop is None:
                    raise
                raise stop from None

    def _stop_after(
        self, error: Exception, iteration: int, saved: int | None, checkpoint: Path
    ) -> TrainingInterrupted | None:
        """None unless a signal came first (and ``error`` is no error a user can act on otherwise)."""
        if self.requested is None or isinstance(error, ResNetError) or _distributed():
            return None
        if saved is None or not checkpoint.is_file():
            advice = "no checkpoint was written before that; run the same command again to start over"
        else:
            advice = (
                f"the last checkpoint is {checkpoint} (iteration {saved}); continue with: resnet train --resume "
                f"--run-dir {shlex.quote(str(checkpoint.parent))}"
            )
        name = signal.Signals(self.requested).name
        return TrainingInterrupted(
            f"stopped by {name} at iteration {iteration}, which was not completed (the signal also reached a "
            f"helper process, e.g. torch.compile's C++ compiler: {type(error).__name__}); {advice}",
            self.requested,
        )


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
