"""CIFAR-10 / CIFAR-100 in the official python format (``cifar-10-batches-py``, ``cifar-100-python``).

Read from the extracted folder or directly from the official ``.tar.gz`` (so a read-only copy of the archive
needs no extraction); downloaded from the official URL when missing.
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets.utils import calculate_md5

from resnet.data.download import download_file, extract
from resnet.data.paths import PathLike, data_roots, download_root
from resnet.data.sources.base import ArrayDataset, cached_arrays, hash_files
from resnet.data.sources.safe_pickle import safe_loads
from resnet.errors import ChecksumError, DataError, DataNotFoundError


@dataclass(frozen=True)
class CifarFormat:
    """What distinguishes CIFAR-10 from CIFAR-100 on disk."""

    folder: str
    archive: str
    url: str
    md5: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str
    num_classes: int = 10
    member_md5: dict[str, str] = field(default_factory=dict)  # published MD5 of each extracted file

    def members(self) -> list[str]:
        """The files of the extracted folder: training batches, test batches, class names."""
        return [*self.train_files, *self.test_files, self.meta_file]


CIFAR10 = CifarFormat(
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    meta_file="batches.meta",
    label_key="labels",
    names_key="label_names",
    num_classes=10,
    member_md5={  # as published with torchvision's CIFAR10
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
)
CIFAR100 = CifarFormat(
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
    train_files=("train",),
    test_files=("test",),
    meta_file="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
    num_classes=100,
    member_md5={
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "meta": "7973b15100ade9c7d40fb424638fde48",
    },
)


def _expected(fmt: CifarFormat, name: str, roots: list[Path]) -> str:
    where = ", ".join(str(r / name) for r in roots)
    return (
        f"{name} not found; looked in {where} for {fmt.folder}/ or {fmt.archive} (official python format); "
        "allow downloading (drop --no-download) or put the official archive there"
    )


def locate(fmt: CifarFormat, name: str, data_dir: PathLike | None, download: bool) -> Path:
    """The extracted folder or archive to read; downloads (and extracts) when missing and allowed."""
    roots = data_roots(data_dir)
    for root in roots:
        for base in (root / name, root):
            if (base / fmt.folder).is_dir():
                return base / fmt.folder
            if (base / fmt.archive).is_file():
                return base / fmt.archive
    if not download:
        raise DataNotFoundError(_expected(fmt, name, roots))
    target = download_root(data_dir) / name
    archive = download_file(fmt.url, target / fmt.archive, fmt.md5)
    extract(archive, target)
    return target / fmt.folder if (target / fmt.folder).is_dir() else archive


MAX_MEMBER_BYTES = 256 * 1024 * 1024  # the largest official file (CIFAR-100's train) has 155 MB


def _check_member_size(size: int, where: str, fmt: CifarFormat) -> None:
    """From a tar header or ``stat``, before a byte is read: a crafted 4 GB member is never read into memory."""
    if size > MAX_MEMBER_BYTES:
        raise DataError(
            f"{where} has {size:,} bytes, more than any file of the official {fmt.folder} (at most "
            f"{MAX_MEMBER_BYTES:,}); it is not CIFAR data: delete it and download again"
        )


def _read_members(fmt: CifarFormat, source: Path) -> dict[str, bytes]:
    wanted = fmt.members()
    blobs: dict[str, bytes] = {}
    try:
        if source.is_dir():
            for member in wanted:
                if (source / member).is_file():
                    _check_member_size((source / member).stat().st_size, str(source / member), fmt)
                    blobs[member] = (source / member).read_bytes()
        else:
            with tarfile.open(source) as tar:
                for info in tar:
                    base = info.name.rsplit("/", 1)[-1]
                    if info.isfile() and base in wanted and info.name.startswith(fmt.folder):
                        _check_member_size(info.size, f"{source}:{info.name}", fmt)
                        blobs[base] = tar.extractfile(info).read()  # type: ignore[union-attr]
    except (OSError, tarfile.TarError, EOFError) as error:
        raise DataError(f"cannot read {source}: {error}; delete it and download again") from error
    _check_complete(fmt, source, [m for m in wanted if m not in blobs])
    return blobs


def _check_complete(fmt: CifarFormat, source: Path, missing: list[str]) -> None:
    if missing:
        raise DataError(
            f"{source} lacks {', '.join(missing)}: not the complete official {fmt.folder}; delete the folder to "
            f"download it again, or put the official {fmt.archive} there"
        )


def verify_members(fmt: CifarFormat, source: Path, blobs: dict[str, bytes]) -> None:
    """Extracted files must be the published ones (where a checksum is published): a modified or crafted batch is
    refused before it is unpickled."""
    for member, expected in fmt.member_md5.items():
        if member in blobs and hashlib.md5(blobs[member]).hexdigest() != expected:
            raise ChecksumError(
                f"{source / member} is not the official {fmt.folder} file (its MD5 differs from the published "
                f"{expected}); delete {source} to download it again, or replace the file from the official "
                f"{fmt.archive}"
            )


def _unpickle(source: Path, member: str, blob: bytes) -> dict:
    try:
        entry = safe_loads(blob)
    except Exception as error:  # UnpicklingError, EOFError, UnsafePickleError, ...
        raise DataError(f"{source / member} is not a CIFAR python batch ({error}); replace it") from error
    if not isinstance(entry, dict):
        raise DataError(f"{source / member} is not a CIFAR python batch (no dict inside); replace it")
    return entry


def _parse(fmt: CifarFormat, source: Path, blobs: dict[str, bytes]) -> ArrayDataset:
    meta = _unpickle(source, fmt.meta_file, blobs[fmt.meta_file])
    names = meta.get(fmt.names_key)
    if not isinstance(names, list) or not names:
        raise DataError(f"{source / fmt.meta_file} has no '{fmt.names_key}' list; replace it")

    def batch(files: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for member in files:
            entry = _unpickle(source, member, blobs[member])
            try:
                x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                y = np.asarray(entry[fmt.label_key], dtype=np.int64).reshape(-1)
            except (KeyError, ValueError, TypeError) as error:
                raise DataError(f"{source / member} is not a CIFAR python batch ({error!r}); replace it") from error
            if len(x) != len(y):
                raise DataError(f"{source / member} holds {len(x)} images but {len(y)} labels; replace it")
            bad = (y < 0) | (y >= len(names))
            if bad.any():
                raise DataError(
                    f"{source / member}: label {int(y[bad][0])} is out of range for {len(names)} classes; replace "
                    "the file"
                )
            xs.append(x)
            ys.append(y)
        return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))

    train_x, train_y = batch(fmt.train_files)
    test_x, test_y = batch(fmt.test_files)
    return ArrayDataset(train_x, train_y, test_x, test_y, [str(n) for n in names], str(source))


def load_cifar(fmt: CifarFormat, name: str, data_dir: PathLike | None, download: bool) -> ArrayDataset:
    """Locate (or download), verify and decode a CIFAR dataset, through the tensor cache."""
    source = locate(fmt, name, data_dir, download)
    if source.is_dir():
        members = fmt.members()
        _check_complete(fmt, source, [m for m in members if not (source / m).is_file()])  # before anything is read
        key = hash_files(source / m for m in members)
    else:
        key = calculate_md5(source)
        if key != fmt.md5:
            raise ChecksumError(
                f"{source} has MD5 {key}, the official {fmt.archive} has {fmt.md5}; replace it with the "
                "official archive (or delete it to download again)"
            )

    def build() -> ArrayDataset:
        blobs = _read_members(fmt, source)
        if source.is_dir():  # an archive was verified as a whole above
            verify_members(fmt, source, blobs)
        return _parse(fmt, source, blobs)

    data = cached_arrays(name, [key], build)
    data.location = str(source.resolve())
    return data
