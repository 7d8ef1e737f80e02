"""Progress output: a tqdm bar on a terminal, plain log lines otherwise (CI logs, ``nohup``, pipes)."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm


def _terminal_width(stream: TextIO) -> int | None:
    """None when the terminal reports its size (tqdm follows it), else a fixed 100 columns."""
    try:
        size = os.get_terminal_size(stream.fileno())
        return None if size.columns > 0 and size.lines > 0 else 100
    except (OSError, ValueError, AttributeError):
        return 100


class Progress:
    """Reports training progress as iterations advance; ``mode`` is bar, plain, none or auto."""

    def __init__(self, mode: str, total: int, start: int, every: int, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if hasattr(self.stream, "isatty") and self.stream.isatty() else "plain"
        self.mode, self.total, self.every = mode, total, max(1, every)
        self.last_logged = start
        self.start_time = time.perf_counter()
        self.start_iteration = start
        self.bar: Any = None
        self.images, self.seconds = 0, 0.0
        if mode == "bar":
            from tqdm.auto import tqdm as auto_tqdm

            # A pseudo-terminal without a size (`script`, ssh -T, CI) reports 0x0, and tqdm then hides the bar as
            # "below the screen": give it a size of its own.
            width = _terminal_width(self.stream)
            self.bar = auto_tqdm(
                total=total, initial=start, unit="it", file=self.stream, desc="train",
                dynamic_ncols=width is None, ncols=width, nrows=None if width is None else 24,
            )  # fmt: skip

    def update(
        self, iteration: int, epoch: int, loss: float, error: float, images: int, seconds: float, lr: float
    ) -> None:
        """``images`` were trained on in ``seconds`` since the previous call; the rate shown is smoothed."""
        self.images += images
        self.seconds += seconds
        images_per_sec = self.images / max(self.seconds, 1e-9)
        if self.seconds > 30:  # a sliding-ish window: keep the rate current without jitter
            self.images, self.seconds = self.images // 2, self.seconds / 2
        if self.bar is not None:
            self.bar.update(iteration - self.bar.n)
            self.bar.set_postfix(
                epoch=epoch,
                loss=f"{loss:.3f}",
                err=f"{error:.1f}%",
                img_s=f"{images_per_sec:.0f}",
                lr=f"{lr:.3g}",
                refresh=False,
            )
        elif self.mode == "plain" and (iteration - self.last_logged >= self.every or iteration == self.total):
            self.last_logged = iteration
            done = iteration - self.start_iteration
            elapsed = time.perf_counter() - self.start_time
            eta = elapsed / done * (self.total - iteration) if done else 0.0
            self.write(
                f"iter {iteration}/{self.total} epoch {epoch} loss {loss:.4f} train_err {error:.2f}% "
                f"lr {lr:.4g} {images_per_sec:.0f} img/s eta {tqdm.format_interval(eta)}"
            )

    def write(self, message: str) -> None:
        if self.mode == "none":
            return
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
