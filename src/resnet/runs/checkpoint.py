"""Atomic, verified checkpoints holding everything needed to continue a run exactly.

A checkpoint is written to a temporary file in the same folder, flushed and fsync'ed, then renamed over the old
one, so that a crash at any moment leaves either the previous or the new checkpoint, never a torn file. RNG
states are stored as tensors and plain numbers so that ``torch.load(weights_only=True)`` can read them.

Format 2 adds a SHA-256 ``checksum`` of the whole payload's *content* (every key, number, string and tensor byte,
whatever keys the trainer puts in: :func:`resnet.files.content_checksum`, which the tensor cache uses too),
verified on load so that a flipped bit is an error rather than silently wrong weights, and the ``run_id`` of the
run directory the checkpoint belongs to.
"""

from __future__ import annotations

import errno
import pickle
import random
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resnet.errors import CheckpointError
from resnet.files import content_checksum, disk_full, write_atomic

FORMAT_VERSION = 2
CHECKSUM_KEY = "checksum"


def capture_rng_state() -> dict[str, Any]:
    """Every RNG a training step may touch (the data streams use their own seeded generators)."""
    python_state = random.getstate()
    numpy_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "python": [python_state[0], list(python_state[1]), python_state[2]],
        "numpy": {
            "keys": torch.from_numpy(np.asarray(numpy_state[1], dtype=np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def non_finite_entry(payload: dict[str, Any]) -> str | None:
    """The first parameter/buffer or optimizer-state tensor holding NaN or inf (``"model.fc.weight"``), else None.

    Checked before every save: a checkpoint must never hold weights from after the run diverged.
    """
    for section in ("model", "optimizer"):
        found = _first_non_finite(payload.get(section), section)
        if found is not None:
            return found
    return None


def _first_non_finite(value: Any, where: str) -> str | None:
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex():
            return None if bool(torch.isfinite(value).all()) else where
        return None
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _first_non_finite(item, f"{where}.{key}")
        if found is not None:
            return found
    return None


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the complete new one.

    The format version and a content checksum are added. A failed write (a full disk, a file-size limit, a
    read-only folder) removes its temporary file, leaves the previous checkpoint untouched and raises a
    :class:`CheckpointError` that says so.
    """
    path = Path(path)
    payload = {"format_version": FORMAT_VERSION, **{k: v for k, v in payload.items() if k != CHECKSUM_KEY}}
    payload[CHECKSUM_KEY] = content_checksum(payload)
    try:
        write_atomic(path, lambda stream: torch.save(payload, stream), durable=True)
    except (OSError, RuntimeError) as error:
        raise CheckpointError(_write_failure(path, error)) from error


def _write_failure(path: Path, error: BaseException) -> str:
    code = getattr(error, "errno", None) or getattr(error.__cause__, "errno", None)
    previous = f"the previous {path.name} is intact" if path.is_file() else f"no earlier {path.name} existed"
    if disk_full(error):
        what = "the disk is full (or a quota or file-size limit was reached)"
        action = f"free some space, then continue with `resnet train --resume --run-dir {path.parent}`"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        what = "the run directory is not writable"
        action = "make it writable or choose another --run-dir"
    else:
        what = first_line(error)
        action = "check the run directory"
    return f"cannot write checkpoint {path}: {what}; {previous}; {action}"


def load_checkpoint(
    path: Path, map_location: str | torch.device = "cpu", *, verify: bool = True, mmap: bool = False
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_atomic`; any damage is a one-line :class:`CheckpointError`.

    ``verify`` recomputes the content checksum (a flipped bit anywhere in the content is detected);
    ``mmap`` maps tensors instead of reading them (cheap when only the configuration is wanted).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at '{path}'; check --run-dir, or start the run without --resume")
    other = identify_other_file(path)
    if other is not None:
        raise CheckpointError(f"'{path}' is {other}, not a training checkpoint")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        if "GLOBAL" in str(error) or "global" in str(error).split("WeightsUnpickler error:")[-1]:
            raise CheckpointError(
                f"'{path}' holds Python objects that this package will not unpickle (it reads tensors and plain "
                "values only, so that a file cannot run code); it was not written by resnet train"
            ) from error
        detail = (str(error).split("WeightsUnpickler error:")[-1].strip().splitlines() or ["not a pickle"])[0]
        raise CheckpointError(
            f"checkpoint '{path}' cannot be read ({detail}); it may be truncated or corrupt"
        ) from error
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as error:
        _refuse_torchscript(path)
        raise CheckpointError(
            f"checkpoint '{path}' cannot be read ({first_line(error)}); it may be truncated or corrupt"
        ) from error
    if not isinstance(payload, dict) or "model" not in payload:
        _refuse_torchscript(path)
        raise CheckpointError(f"'{path}' is not a training checkpoint of this package")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint '{path}' has format {version}, this version reads {FORMAT_VERSION}")
    if verify:
        stored = payload.get(CHECKSUM_KEY)
        actual = content_checksum({k: v for k, v in payload.items() if k != CHECKSUM_KEY})
        if stored != actual:
            raise CheckpointError(
                f"checkpoint '{path}' is corrupt: its content checksum does not match (stored {str(stored)[:12]}, "
                f"computed {actual[:12]}); restore it from a copy, or resume from another checkpoint"
            )
    return payload


def first_line(error: BaseException) -> str:
    """An error's message in one line (its type when it has none)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def identify_other_file(path: Path) -> str | None:
    """What a file given as a checkpoint is when its first bytes say it is something else, and which command reads
    it; None when it may be a checkpoint (a torch zip archive or an old pickle). Only 64 bytes are read: every load
    pays for it."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError:
        return None
    suffix = path.suffix.lower()
    if suffix == ".onnx" or (head[:1] == b"\x08" and b"onnx" in head.lower()):
        return "an ONNX model (read by onnxruntime; `resnet export` writes it from a checkpoint)"
    if suffix == ".safetensors" or (len(head) > 9 and head[8:10] == b'{"'):
        return "a safetensors file (give it to `resnet eval/predict --checkpoint` with its .json sidecar)"
    if head.lstrip()[:1] in (b"{", b"["):
        return "a JSON file"
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM")):
        return "an image (give images to `resnet predict`, checkpoints to --checkpoint)"
    return None


def _refuse_torchscript(path: Path) -> None:
    """Called once a load has failed (not on every load): a TorchScript archive is a zip like a checkpoint."""
    try:
        with zipfile.ZipFile(path) as archive:
            scripted = any(name.split("/", 1)[-1].startswith("code/") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return
    if scripted:
        raise CheckpointError(
            f"'{path}' is a TorchScript module (load it with torch.jit.load; `resnet export --format torchscript` "
            "writes it), not a training checkpoint"
        )
