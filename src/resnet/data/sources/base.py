"""The in-memory form of a small dataset and its decoded-tensor cache.

Small datasets are decoded once into uint8 tensors and cached in the cache directory under a key derived from the
*content* of their source files, so a changed source is re-decoded and an unchanged one loads in a fraction of a
second. The cache carries a content checksum (the one checkpoints carry, :func:`resnet.files.content_checksum`):
a damaged file is rebuilt with a warning, never loaded as wrong pixels.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from resnet.data.paths import tensor_cache_dir
from resnet.files import content_checksum, disk_full, write_atomic

CACHE_FORMAT = "resnet-data-v2"  # v2: with a content checksum
CHECKSUM_KEY = "checksum"


@dataclass
class ArrayDataset:
    """A decoded dataset: uint8 images ``(N, C, H, W)`` and int64 labels, for train and test."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    classes: list[str]
    location: str = ""
    skipped: int = 0  # unreadable images skipped while decoding (``on_bad_image="skip"``)
    test_split: str = "test"  # name of the held-out split on disk ("test" or "val")
    val_x: Tensor | None = None  # a validation split of its own (image folders with both val/ and test/)
    val_y: Tensor | None = None


def hash_files(paths: Iterable[Path]) -> str:
    """A content hash of files (their bytes), for cache keys."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def cached_arrays(name: str, key_parts: Iterable[str], build: Callable[[], ArrayDataset]) -> ArrayDataset:
    """Load the decoded dataset from the tensor cache, or ``build()`` it and store it there."""
    key = hashlib.sha256("|".join([CACHE_FORMAT, name, *key_parts]).encode()).hexdigest()[:20]
    path = tensor_cache_dir() / f"{name}-{key}.pt"
    if path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            stored = blob.pop(CHECKSUM_KEY, None)
            if stored == content_checksum(blob):
                return ArrayDataset(**blob)
            warnings.warn(
                f"the tensor cache {path} is damaged (its content checksum does not match); rebuilding it",
                stacklevel=2,
            )
        except Exception as error:  # a corrupt cache is rebuilt, never trusted
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            warnings.warn(f"ignoring unreadable tensor cache {path} ({reason}); rebuilding it", stacklevel=2)
    data = build()
    blob = vars(data)
    try:
        write_atomic(path, lambda stream: torch.save({**blob, CHECKSUM_KEY: content_checksum(blob)}, stream))
    except (OSError, RuntimeError) as error:  # torch.save reports a full disk as a RuntimeError
        full = disk_full(error)
        reason = "the disk is full (or a quota or file-size limit was reached)" if full else str(error).splitlines()[0]
        warnings.warn(
            f"cannot write the tensor cache {path} ({reason}); using the decoded data from memory this time "
            "(free space or set RESNET_CACHE to a writable directory to cache it)",
            stacklevel=2,
        )
    return data
