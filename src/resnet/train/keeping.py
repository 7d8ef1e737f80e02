"""Checkpoint keeping: the best ``k`` models by validation error, and the weight average of the last ``k``.

Kept files hold the usual checkpoint layout (``model``, ``config``, ``iteration``...), so ``resnet eval`` and
``load_checkpoint`` read them. Which files are kept is part of the training checkpoint (``state_dict``), so a
resumed run keeps the same set; files written after the checkpoint it resumes from are removed.
Averaging follows timm's ``avg_checkpoints.py``: floating tensors (BatchNorm statistics included) are averaged,
integer buffers come from the newest model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from resnet.config import Config
from resnet.eval import Metrics
from resnet.runs.checkpoint import load_checkpoint, save_atomic

AVERAGED_CHECKPOINT = "averaged.pt"


def average_state_dicts(states: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """The mean of floating tensors (accumulated in float64), the last state's value for the others."""
    averaged: dict[str, Tensor] = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            total = torch.zeros_like(last, dtype=torch.float64)
            for state in states:
                total += state[key].double()
            averaged[key] = (total / len(states)).to(last.dtype)
        else:
            averaged[key] = last.clone()
    return averaged


class CheckpointKeeper:
    """Writes ``best-<iteration>.pt`` for the ``keep_best`` lowest validation errors and ``snapshot-<iteration>.pt``
    for the last ``average_last`` evaluations; :meth:`average` folds the snapshots into ``averaged.pt``."""

    def __init__(self, directory: Path, keep_best: int, average_last: int) -> None:
        self.directory, self.keep_best, self.average_last = Path(directory), keep_best, average_last
        self.best: list[tuple[float, int]] = []  # (val_error, iteration), best first
        self.snapshots: list[int] = []  # iterations, oldest first

    def best_file(self, iteration: int) -> Path:
        return self.directory / f"best-{iteration:07d}.pt"

    def snapshot_file(self, iteration: int) -> Path:
        return self.directory / f"snapshot-{iteration:07d}.pt"

    def after_evaluation(self, iteration: int, val_error: float | None, payload: dict[str, Any]) -> None:
        """Keep the model evaluated at ``iteration`` if it ranks; ``payload`` is a checkpoint dict."""
        if self.keep_best and val_error is not None:
            ranked = sorted([*self.best, (val_error, iteration)])  # ties: the earlier iteration first
            if (val_error, iteration) in ranked[: self.keep_best]:
                save_atomic(payload, self.best_file(iteration))
                for _, dropped in ranked[self.keep_best :]:
                    self.best_file(dropped).unlink(missing_ok=True)
                self.best = ranked[: self.keep_best]
        if self.average_last:
            save_atomic(
                {k: v for k, v in payload.items() if k in ("model", "config", "iteration")},
                self.snapshot_file(iteration),
            )
            self.snapshots.append(iteration)
            for dropped in self.snapshots[: -self.average_last]:
                self.snapshot_file(dropped).unlink(missing_ok=True)
            self.snapshots = self.snapshots[-self.average_last :]

    def average(self) -> dict[str, Tensor] | None:
        """The averaged model weights of the kept snapshots (``None`` when there are none)."""
        if not self.snapshots:
            return None
        states = [load_checkpoint(self.snapshot_file(i))["model"] for i in self.snapshots]
        return average_state_dicts(states)

    def state_dict(self) -> dict[str, Any]:
        return {"best": [list(item) for item in self.best], "snapshots": list(self.snapshots)}

    def load_state_dict(self, state: dict[str, Any], iteration: int) -> None:
        """Adopt the checkpoint's set; remove files of evaluations after ``iteration`` (they will be redone)."""
        self.best = [(float(error), int(it)) for error, it in state.get("best", [])]
        self.snapshots = [int(it) for it in state.get("snapshots", [])]
        kept = {self.best_file(it) for _, it in self.best} | {self.snapshot_file(it) for it in self.snapshots}
        for pattern in ("best-*.pt", "snapshot-*.pt"):
            for path in self.directory.glob(pattern):
                if path not in kept:
                    path.unlink(missing_ok=True)


def averaged_results(
    keeper: CheckpointKeeper,
    model: nn.Module,
    evaluate: Callable[[nn.Module, Any], Metrics],
    data: Any,
    config: Config,
) -> dict[str, Any]:
    """At the end of a run: the kept files, and the averaged model written to ``averaged.pt`` with its errors."""
    out: dict[str, Any] = {"kept_best": [str(keeper.best_file(it)) for _, it in keeper.best]}
    averaged = keeper.average() if keeper.average_last else None
    if averaged is None:
        return out
    probe = copy.deepcopy(model)
    probe.load_state_dict(averaged)
    val = evaluate(probe, data.val) if data.val is not None else None
    test = evaluate(probe, data.test)
    snapshots = list(keeper.snapshots)
    path = keeper.directory / AVERAGED_CHECKPOINT
    save_atomic(
        {"model": averaged, "iteration": snapshots[-1], "averaged_iterations": snapshots, "config": config.to_dict()},
        path,
    )
    out.update(
        averaged_checkpoint=str(path),
        averaged_iterations=snapshots,
        averaged_val_error=val.top1_error if val is not None else None,
        averaged_test_error=test.top1_error,
    )
    return out
