"""A run directory: resolved config, metrics.jsonl, TensorBoard events, curves, checkpoints and summary."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import time
import uuid
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

from resnet.config import Config
from resnet.config.recipes import dump_toml
from resnet.errors import CheckpointError, ConfigError, RunDirError
from resnet.files import disk_full, write_text_atomic
from resnet.runs.lock import RunLock

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
TRAIN_CURVE_FILE = "train_curve.jsonl"  # running training loss/error every log.every_iterations
SUMMARY_FILE = "summary.json"
CURVES_FILE = "curves.png"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
BEST_EMA_CHECKPOINT = "best_ema.pt"  # the weight average that validated best (ema.enabled)
RUN_FILE = "run.json"  # the run's identity: checkpoints carry the same run_id
SUMMARY_PATHS = ("run_dir", "curves", "last_checkpoint", "best_checkpoint", "averaged_checkpoint", "kept_best")


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
        self._lock = RunLock(self.path)
        self._created = False
        self.run_id: str | None = None

    def acquire(self, *, resume: bool) -> None:
        """Check the directory is usable, create it, take its lock and clear a killed run's temporary files.

        Nothing in an existing directory is changed when this refuses (another live run, a finished run without
        --resume, a file in the way, no write permission).
        """
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"--run-dir '{self.path}' is a file, not a directory; choose another --run-dir")
        if self.path.exists() and not resume and (self.path / LAST_CHECKPOINT).exists():
            raise ConfigError(
                f"run directory '{self.path}' already holds a run; pass --resume to continue it, "
                "or choose another --run-dir"
            )
        if self.path.is_dir() and not (os.access(self.path, os.W_OK) and self.path.stat().st_mode & 0o222):
            # mode bits as well as access(): root may write anywhere, but a folder without write bits is read-only
            raise RunDirError(f"run directory '{self.path}' is read-only; make it writable or choose another --run-dir")
        try:
            self._created = not self.path.exists()
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except (PermissionError, OSError) as error:
            if isinstance(error, ConfigError):
                raise
            raise _unwritable(self.path, error) from error
        if self._lock.stale_owner:
            warnings.warn(
                f"{self.path}: took over the lock of process {self._lock.stale_owner.get('pid')}, which is gone",
                stacklevel=2,
            )
        for stale in self.path.glob(".*.*.tmp"):  # resnet.files' temporary names, left by a killed run
            with contextlib.suppress(OSError):
                stale.unlink()  # the files themselves are intact (the old or the complete new one)

    def release(self) -> None:
        """Drop the lock; a directory this run created and left empty is removed again."""
        self._lock.release()
        if self._created:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only succeeds when empty

    def create(self, config: Config, *, resume: bool) -> None:
        try:
            if resume:
                self.run_id = self.read_run_id()
                for name in (METRICS_FILE, TRAIN_CURVE_FILE):
                    read_metrics(self.path, name)  # damage is reported before anything is rewritten
            else:
                self.run_id = uuid.uuid4().hex
                write_text_atomic(
                    self.file(RUN_FILE), json.dumps({"run_id": self.run_id, "created": time.time()}) + "\n"
                )
            write_text_atomic(
                self.file(CONFIG_FILE),
                "# Resolved configuration of this run; `resnet train --recipe <this file>` repeats it.\n"
                + dump_toml(config.to_dict()),
            )
        except OSError as error:
            raise _unwritable(self.path, error) from error
        self._created = False

    def read_run_id(self) -> str:
        path = self.file(RUN_FILE)
        try:
            run_id = json.loads(path.read_text()).get("run_id")
        except (OSError, ValueError, AttributeError) as error:
            raise CheckpointError(
                f"{path} is missing or unreadable, so the checkpoint in '{self.path}' cannot be matched to this run "
                "directory; --resume only continues a run in its own directory"
            ) from error
        if not isinstance(run_id, str) or not run_id:
            raise CheckpointError(f"{path} holds no run_id; --resume only continues a run in its own directory")
        return run_id

    def check_checkpoint(self, checkpoint: dict[str, Any], name: str = LAST_CHECKPOINT) -> None:
        """A checkpoint copied in from another run is refused rather than continued as this one."""
        run_id = self.read_run_id()
        if checkpoint.get("run_id") != run_id:
            config = checkpoint.get("config") or {}
            model = (config.get("model") or {}).get("name", "?")
            raise CheckpointError(
                f"{self.file(name)} belongs to another run (run id {str(checkpoint.get('run_id'))[:12]}, model "
                f"{model}), not to '{self.path}' (run id {run_id[:12]}); resume that run in its own directory, "
                "or start a new run"
            )

    def file(self, name: str) -> Path:
        return self.path / name

    # metrics.jsonl ------------------------------------------------------------------------------------------
    def append_metrics(self, record: dict[str, Any], name: str = METRICS_FILE) -> None:
        line = json.dumps({k: _json_safe(v) for k, v in record.items()})
        try:
            with open(self.file(name), "a") as handle:
                handle.write(line + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:  # a full disk: the checkpoints are intact, a torn line is dropped on resume
            raise _unwritable(self.path, error) from error

    def truncate_metrics(self, iteration: int) -> None:
        """On resume, drop evaluations logged after the checkpoint (they will be repeated)."""
        for name in (METRICS_FILE, TRAIN_CURVE_FILE):
            kept = [r for r in read_metrics(self.path, name) if r.get("iteration", 0) <= iteration]
            write_text_atomic(self.file(name), "".join(json.dumps(r) + "\n" for r in kept))

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
        """Paths inside the run directory are stored relative to it, so that a copied or committed run holds no
        machine's absolute paths (``run_dir`` itself is ``"."``)."""
        stored = {k: _json_safe(self._relative(v) if k in SUMMARY_PATHS else v) for k, v in summary.items()}
        text = json.dumps(stored, indent=2)
        try:
            write_text_atomic(self.file(SUMMARY_FILE), text + "\n")
        except OSError as error:
            raise _unwritable(self.path, error) from error

    def _relative(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self._relative(item) for item in value]
        if not isinstance(value, str) or not value:
            return value
        root = self.path.resolve()
        try:
            return str(Path(value).resolve().relative_to(root))
        except (ValueError, OSError):
            return value


def _unwritable(path: Path, error: OSError) -> RunDirError:
    if disk_full(error):
        return RunDirError(
            f"cannot write to run directory '{path}': the disk is full; its checkpoints are intact, free some space "
            f"and continue with `resnet train --resume --run-dir {path}`"
        )
    reason = error.strerror or str(error)
    return RunDirError(
        f"cannot write to run directory '{path}' ({reason}); make it writable or choose another --run-dir"
    )


def _tensorboard_tag(key: str) -> str:
    if key.endswith("_error"):
        return f"error/{key[:-6]}"
    if key.endswith("_loss"):
        return f"loss/{key[:-5]}"
    return f"train/{key}"


def read_metrics(run_dir: str | Path, name: str = METRICS_FILE) -> list[dict[str, Any]]:
    """The records of a ``.jsonl`` file. A torn last line (a kill or a full disk during an append) is dropped
    with a warning; damage anywhere else is an error naming the file and line."""
    path = Path(run_dir) / name
    if not path.exists():
        return []
    lines = path.read_text(errors="replace").splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as error:
            if all(not rest.strip() for rest in lines[number:]):
                warnings.warn(
                    f"{path}: dropped a torn last line ({number}); it was being written when the run stopped",
                    stacklevel=2,
                )
                break
            raise RunDirError(
                f"{path} line {number} is not valid JSON ({error}); repair or remove that line"
            ) from error
        records.append(record)
    return records


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
