"""CIFAR-10 / CIFAR-100 in the official python format (``cifar-10-batches-py``, ``cifar-100-python``).

Read from the extracted folder or directly from the official ``.tar.gz`` (so a read-only copy of the archive
needs no extraction); downloaded from the official URL when missing.
"""

from __future__ import annotations

import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from resnet.data.download import download_file, extract, file_md5
from resnet.data.paths import PathLike, data_roots, download_root
from resnet.data.sources.base import ArrayDataset, cached_arrays, hash_files
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


def _read_members(fmt: CifarFormat, source: Path) -> dict[str, bytes]:
    wanted = [*fmt.train_files, *fmt.test_files, fmt.meta_file]
    blobs: dict[str, bytes] = {}
    try:
        if source.is_dir():
            for member in wanted:
                blobs[member] = (source / member).read_bytes()
        else:
            with tarfile.open(source) as tar:
                for info in tar:
                    base = info.name.rsplit("/", 1)[-1]
                    if info.isfile() and base in wanted and info.name.startswith(fmt.folder):
                        blobs[base] = tar.extractfile(info).read()  # type: ignore[union-attr]
    except (OSError, tarfile.TarError, EOFError) as error:
        raise DataError(f"cannot read {source}: {error}; delete it and download again") from error
    missing = [m for m in wanted if m not in blobs]
    if missing:
        raise DataError(f"{source} lacks {', '.join(missing)}: not the official {fmt.folder} layout")
    return blobs


def _parse(fmt: CifarFormat, source: Path, blobs: dict[str, bytes]) -> ArrayDataset:
    def batch(files: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for member in files:
            try:
                entry = pickle.loads(blobs[member], encoding="latin1")
                xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(entry[fmt.label_key], dtype=np.int64))
            except Exception as error:
                raise DataError(f"{source}: {member} is not a CIFAR python batch ({error})") from error
        return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))

    train_x, train_y = batch(fmt.train_files)
    test_x, test_y = batch(fmt.test_files)
    meta = pickle.loads(blobs[fmt.meta_file], encoding="latin1")
    return ArrayDataset(train_x, train_y, test_x, test_y, list(meta[fmt.names_key]), str(source))


def load_cifar(fmt: CifarFormat, name: str, data_dir: PathLike | None, download: bool) -> ArrayDataset:
    """Locate (or download), verify and decode a CIFAR dataset, through the tensor cache."""
    source = locate(fmt, name, data_dir, download)
    if source.is_dir():
        key = hash_files(source / m for m in [*fmt.train_files, *fmt.test_files, fmt.meta_file])
    else:
        key = file_md5(source)
        if key != fmt.md5:
            raise ChecksumError(
                f"{source} has MD5 {key}, the official {fmt.archive} has {fmt.md5}; replace it with the "
                "official archive (or delete it to download again)"
            )

    def build() -> ArrayDataset:
        return _parse(fmt, source, _read_members(fmt, source))

    data = cached_arrays(name, [key], build)
    data.location = str(source.resolve())
    return data
