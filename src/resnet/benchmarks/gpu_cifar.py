"""Section 6, part 2: CIFAR ResNet-20 wall-clock time to a test accuracy, ours vs the common recipe, one device.

Both sides train from the same cifar10-jpeg files on the same device, evaluate on the 10,000 test images after
every epoch and stop at the first evaluation that reaches the target, or when their wall-clock cap or their
epochs run out. Each side's clock starts before it builds its data, model and optimizer (so start-up, workers and
compilation count); the one-time costs that a second run would not pay (extracting the tars for ``ImageFolder``,
decoding the JPEGs into our tensor cache) are done and timed before either clock starts.

- Ours: ``resnet.train`` (the real ``Trainer``) with a GPU-suited recipe: the ``fast`` recipe (one-cycle,
  Nesterov, label smoothing 0.1, no decay on norms and biases) at batch 512 with its lr scaled linearly from batch
  128, the images held on the device and augmented there, bf16 autocast, channels-last, fused SGD; optionally
  ``torch.compile``. The run directory, per-epoch checkpoints and metrics are written as in any run.
- The common recipe, as tutorials write it (and ``resnet/benchmarks/end_to_end.py``): torchvision ``ImageFolder`` + PIL
  transforms (pad-4 crop, flip, ToTensor, Normalize) + ``DataLoader`` workers (one per core, persistent), the same
  ResNet-20 in eager fp32 NCHW, ``torch.optim.SGD`` (lr 0.1, momentum 0.9, weight decay 5e-4) at batch 128 with
  ``CosineAnnealingLR`` over its epochs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from resnet.benchmarks.end_to_end import CommonRecipe, common_loader, extracted_split

if TYPE_CHECKING:
    from resnet.benchmarks.gpu import GpuPlan


@dataclass
class Attempt:
    """One run towards ``target`` percent test accuracy: its evaluations and why it stopped."""

    label: str
    target: float
    curve: list[tuple[float, float, float]] = field(default_factory=list)  # (epoch, test accuracy %, seconds)
    total_s: float = 0.0  # wall-clock of the whole run, until it stopped
    stopped: str = ""  # "target" | "cap" | "epochs" | "failed: <error>"

    def time_to(self, accuracy: float) -> float | None:
        """Seconds to the first evaluation at ``accuracy`` percent or more; None if none got there."""
        return next((seconds for _, acc, seconds in self.curve if acc >= accuracy), None)

    @property
    def reached_s(self) -> float | None:
        return self.time_to(self.target)

    @property
    def best(self) -> tuple[float, float, float] | None:
        """(epoch, accuracy, seconds) of the best evaluation (the earliest of equals)."""
        return max(self.curve, key=lambda point: (point[1], -point[2])) if self.curve else None

    def describe(self) -> str:
        reached = self.reached_s
        if reached is not None:
            epoch = next(e for e, acc, _ in self.curve if acc >= self.target)
            return f"{self.target:g}% at epoch {epoch:g} in {reached:.1f} s"
        if self.stopped.startswith("failed"):
            return self.stopped
        best = self.best
        best_text = f"best {best[1]:.2f}% at epoch {best[0]:g}, {best[2]:.1f} s" if best else "no evaluation"
        return f"{self.target:g}% not reached in {self.total_s:.0f} s ({best_text}; stopped: {self.stopped})"

    def curve_text(self) -> str:
        return " ".join(f"{acc:.1f}" for _, acc, _ in self.curve) or "-"


def prepare_data(folder: str) -> tuple[str, str, float, float]:
    """The one-time costs, outside both clocks: the tars extracted for ``ImageFolder`` and the JPEGs decoded into
    our tensor cache (each a no-op when done before). Returns the train and test trees and the seconds of each.

    Module-level and string-typed, so that the section can run it in a spawned process while part 1 runs.
    """
    from resnet.data.registry import REGISTRY

    root = Path(folder)
    (train_dir, train_s), (test_dir, test_s) = extracted_split(root, "train"), extracted_split(root, "test")
    start = time.perf_counter()
    REGISTRY["cifar10-jpeg"].load(root.parent, False, "error")  # decoded through the tensor cache
    return str(train_dir), str(test_dir), train_s + test_s, time.perf_counter() - start


def failed(label: str, target: float, error: Exception, seconds: float) -> Attempt:
    """A run that raised: the section goes on and the table says why (one line)."""
    first = (str(error).strip().splitlines() or [""])[0][:200]
    return Attempt(label, target, total_s=seconds, stopped=f"failed: {type(error).__name__}: {first}")


class _Stop(Exception):
    """Raised by the watch callback to end a Trainer run, with why (not an error: the benchmark catches it)."""


class _Watch:
    """Trainer callback: stop once an evaluation reached the target, or once the run is past its cap."""

    def __init__(self, target: float, cap_s: float) -> None:
        self.target, self.cap_s = target, cap_s

    def on_iteration_end(self, trainer: Any, iteration: int) -> None:
        # Evaluations are logged after the callbacks of their iteration: the next iteration sees them.
        last = trainer.records[-1] if trainer.records else None
        if last is not None and last.get("test_error") is not None and 100.0 - last["test_error"] >= self.target:
            raise _Stop("target")
        if trainer.wall_time() > self.cap_s:
            raise _Stop("cap")


# The GPU-suited recipe: `fast` at batch 512 (lr 0.2 at 128 scaled linearly: 0.8), all 50,000 images for training,
# the test set evaluated after every epoch in batches of 1,000 (no partial batch: no recompilation).
OURS_OVERRIDES = {
    "data.dataset": "cifar10-jpeg",
    "data.batch_size": 512,
    "data.eval_batch_size": 1000,
    "data.val_size": 0,
    "optim.reference_batch_size": 128,
    "eval.every_epochs": 1,
    "eval.test": "every",
    "checkpoint.every_minutes": 0,
    "log.progress": "none",
    "log.tensorboard": False,
}


def ours_config(plan: GpuPlan, data_root: Path, compile_model: bool, run_dir: Path) -> Any:
    from resnet.train import load_config

    overrides = {
        **OURS_OVERRIDES,
        "model.name": plan.cifar_model,
        "data.data_dir": str(data_root),
        "data.batch_size": plan.ours_batch,
        "train.epochs": plan.epochs,
        "system.device": plan.device,
        "system.compile": "on" if compile_model else "off",
        "run_dir": str(run_dir),
    }
    return load_config("fast", overrides)


def run_ours(label: str, config: Any, target: float, cap_s: float) -> Attempt:
    """Train with ``resnet.train``'s Trainer until ``target`` % test accuracy, the cap or the last epoch."""
    from resnet.train.trainer import Trainer

    trainer = Trainer(config, callbacks=[_Watch(target, cap_s)])
    start = time.perf_counter()
    try:
        trainer.run()
        stopped = "epochs"
    except _Stop as stop:
        stopped = str(stop)
    described = f"{label}, {trainer.runtime.describe()}" if hasattr(trainer, "runtime") else label
    attempt = Attempt(described, target, total_s=time.perf_counter() - start, stopped=stopped)
    # wall_time: seconds since run() began (data loading, model, compilation, training and evaluations)
    attempt.curve = [
        (r["epoch"], 100.0 - r["test_error"], r["wall_time"]) for r in trainer.records if r["test_error"] is not None
    ]
    return attempt


def _accuracy(model: nn.Module, loader: Any, device: torch.device) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            correct += (model(images).argmax(1) == labels).sum().item()
            total += labels.numel()
    return 100.0 * correct / max(total, 1)


def run_common(plan: GpuPlan, train_dir: Path, test_dir: Path, cap_s: float, seed: int = 0) -> Attempt:
    """The tutorial loop (see the module docstring), stopped at ``plan.target`` % test accuracy, the cap or the
    last of ``plan.epochs``."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    device = torch.device(plan.device)
    common = CommonRecipe(
        train_dir, plan.common_batch, plan.workers, model=plan.cifar_model, weight_decay=5e-4, device=device
    )
    test_loader = common_loader(test_dir, 1000, common.workers, train=False)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(common.optimizer, T_max=plan.epochs)
    label = f"common recipe (batch {plan.common_batch}, {common.workers} workers)"
    attempt = Attempt(label, plan.target, stopped="epochs")
    for epoch in range(1, plan.epochs + 1):
        common.model.train()
        for images, labels in common.loader:
            common.step(images, labels)
            if time.perf_counter() - start > cap_s:
                attempt.stopped = "cap"
                break
        if attempt.stopped == "cap":
            break
        scheduler.step()
        attempt.curve.append((epoch, _accuracy(common.model, test_loader, device), time.perf_counter() - start))
        if attempt.curve[-1][1] >= plan.target:
            attempt.stopped = "target"
            break
        if time.perf_counter() - start > cap_s:
            attempt.stopped = "cap"
            break
    attempt.total_s = time.perf_counter() - start
    del common, test_loader  # persistent workers end with their loaders
    return attempt
