"""A run directory: resolved config, metrics.jsonl, TensorBoard events, curves, checkpoints and summary."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from resnet.errors import ConfigError
from resnet.train.config import Config
from resnet.train.recipes import dump_toml

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
TRAIN_CURVE_FILE = "train_curve.jsonl"  # running training loss/error every log.every_iterations
SUMMARY_FILE = "summary.json"
CURVES_FILE = "curves.png"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


def default_run_dir(config: Config, root: str | Path = "runs") -> Path:
    dataset = Path(config.data.dataset).name or "data"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{config.model.name}-{dataset}-{stamp}"


def _json_safe(value: Any) -> Any:
    """NaN/inf are not JSON: write them as null so that every line parses everywhere."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._writer: Any = None

    def create(self, config: Config, *, resume: bool) -> None:
        if self.path.exists() and not resume and (self.path / LAST_CHECKPOINT).exists():
            raise ConfigError(
                f"run directory '{self.path}' already holds a run; pass --resume to continue it, "
                "or choose another --run-dir"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / CONFIG_FILE).write_text(
            "# Resolved configuration of this run; `resnet train --recipe <this file>` repeats it.\n"
            + dump_toml(config.to_dict())
        )

    def file(self, name: str) -> Path:
        return self.path / name

    # metrics.jsonl ------------------------------------------------------------------------------------------
    def append_metrics(self, record: dict[str, Any], name: str = METRICS_FILE) -> None:
        line = json.dumps({k: _json_safe(v) for k, v in record.items()})
        with open(self.file(name), "a") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)

    def truncate_metrics(self, iteration: int) -> None:
        """On resume, drop evaluations logged after the checkpoint (they will be repeated)."""
        for name in (METRICS_FILE, TRAIN_CURVE_FILE):
            kept = [r for r in read_metrics(self.path, name) if r.get("iteration", 0) <= iteration]
            self.file(name).write_text("".join(json.dumps(r) + "\n" for r in kept))

    # TensorBoard --------------------------------------------------------------------------------------------
    def open_tensorboard(self, purge_step: int | None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # pragma: no cover - tensorboard is a dependency
            return
        self._writer = SummaryWriter(log_dir=str(self.path), purge_step=purge_step)

    def log_scalars(self, record: dict[str, Any], step: int) -> None:
        if self._writer is None:
            return
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("iteration",):
                self._writer.add_scalar(_tensorboard_tag(key), value, step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # summary.json -------------------------------------------------------------------------------------------
    def write_summary(self, summary: dict[str, Any]) -> None:
        text = json.dumps({k: _json_safe(v) for k, v in summary.items()}, indent=2)
        self.file(SUMMARY_FILE).write_text(text + "\n")


def _tensorboard_tag(key: str) -> str:
    if key.endswith("_error"):
        return f"error/{key[:-6]}"
    if key.endswith("_loss"):
        return f"loss/{key[:-5]}"
    return f"train/{key}"


def read_metrics(run_dir: str | Path, name: str = METRICS_FILE) -> list[dict[str, Any]]:
    path = Path(run_dir) / name
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def versions() -> dict[str, str]:
    import numpy
    import torch
    import torchvision

    try:
        package_version = metadata.version("resnet")
    except metadata.PackageNotFoundError:
        package_version = "unknown"
    return {
        "resnet": package_version,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }
