"""MNIST and Fashion-MNIST in the official IDX format (``.gz`` or raw).

Downloads are verified against the published MD5 of the official ``.gz`` files. Local copies are accepted either
by that MD5 or by the MD5 of their *decompressed* content, because repackagers (e.g. Debian's
``dataset-fashion-mnist``) recompress the files, changing their bytes but not the data.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets.utils import calculate_md5

from resnet.data.download import content_md5, download_file
from resnet.data.paths import PathLike, data_roots, download_root
from resnet.data.sources.base import ArrayDataset, cached_arrays, hash_files
from resnet.errors import ChecksumError, DataError, DataNotFoundError

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def per_file(*values: str) -> dict[str, str]:
    """One value per file of :data:`FILES`, in that order."""
    return dict(zip(FILES, values, strict=True))


@dataclass(frozen=True)
class IdxFormat:
    """Where an IDX dataset is published and how its files are recognised."""

    mirrors: tuple[str, ...]
    gz_md5: dict[str, str]  # published MD5 of the official .gz files
    content_md5: dict[str, str]  # MD5 of the decompressed files, where known
    classes: tuple[str, ...]
    torchvision_folder: str  # ``root/<folder>/raw`` is where torchvision keeps them
    well_known: tuple[Path, ...] = field(default=())


MNIST = IdxFormat(
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    gz_md5=per_file(
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ),
    content_md5={},
    classes=tuple(str(d) for d in range(10)),
    torchvision_folder="MNIST",
    well_known=(Path("/usr/share/datasets/mnist"),),
)
FASHION_MNIST = IdxFormat(
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    gz_md5=per_file(
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79",
        "bb300cfdad3c16e7a12a480ee83cd310",
    ),
    content_md5=per_file(
        "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "9018921c3c673c538a1fc5bad174d6f9",
        "8181f5470baa50b63fa0f6fddb340f0a",
        "15d484375f8d13e6eb1aabb0c3f46965",
    ),
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    torchvision_folder="FashionMNIST",
    well_known=(Path("/usr/share/datasets/fashion-mnist"),),
)


def _find_in(folder: Path) -> list[Path] | None:
    found = []
    for stem in FILES:
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                found.append(candidate)
                break
        else:
            return None
    return found


def locate(fmt: IdxFormat, name: str, data_dir: PathLike | None, download: bool) -> list[Path]:
    """The four IDX files (train/test images/labels), from the first folder holding all of them."""
    roots = data_roots(data_dir)
    folders = [f for r in roots for f in (r / name, r / fmt.torchvision_folder / "raw")] + list(fmt.well_known)
    for folder in folders:
        if (found := _find_in(folder)) is not None:
            return found
    if not download:
        raise DataNotFoundError(
            f"{name} not found; looked in {', '.join(str(f) for f in folders)} for "
            f"{', '.join(s + '[.gz]' for s in FILES)}; allow downloading (drop --no-download) or put them there"
        )
    target = download_root(data_dir) / name
    paths = []
    for stem in FILES:
        dest = target / f"{stem}.gz"
        if not (dest.is_file() and calculate_md5(dest) == fmt.gz_md5[stem]):
            errors = []
            for mirror in fmt.mirrors:
                try:
                    download_file(mirror + dest.name, dest, fmt.gz_md5[stem])
                    break
                except DataError as error:  # try the next mirror, report all if none works
                    errors.append(str(error))
            else:
                raise DataError("; ".join(errors))
        paths.append(dest)
    return paths


def verify(fmt: IdxFormat, path: Path, stem: str) -> None:
    """Accept a local file by the published ``.gz`` MD5 or by the MD5 of its decompressed content."""
    if path.suffix == ".gz" and calculate_md5(path) == fmt.gz_md5[stem]:
        return
    expected = fmt.content_md5.get(stem)
    if expected is None:
        return  # no content checksum published: the parser's magic/shape checks are all we can do
    actual = content_md5(path)
    if actual != expected:
        raise ChecksumError(
            f"{path}: decompressed content has MD5 {actual}, expected {expected}; the file is corrupt or not "
            "the official one, replace it (or delete it to download again)"
        )


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (unsigned-byte data only, as MNIST uses)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"cannot read {path}: {error}; the file is corrupt or truncated, replace it") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(raw) != offset + int(np.prod(dims)):
        raise DataError(f"{path}: size {len(raw)} does not match its header {dims}; the file is truncated")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def load_idx(fmt: IdxFormat, name: str, data_dir: PathLike | None, download: bool) -> ArrayDataset:
    """Locate (or download), verify and decode an IDX dataset, through the tensor cache."""
    paths = locate(fmt, name, data_dir, download)

    def build() -> ArrayDataset:
        arrays = []
        for stem, path in zip(FILES, paths, strict=True):
            verify(fmt, path, stem)
            arrays.append(read_idx(path))
        train_x, train_y, test_x, test_y = arrays
        if len(train_x) != len(train_y) or len(test_x) != len(test_y):
            raise DataError(f"{paths[0].parent}: image and label counts differ; the files do not belong together")
        as_images = lambda a: torch.from_numpy(a.copy()).unsqueeze(1)  # noqa: E731
        as_labels = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
        return ArrayDataset(
            as_images(train_x),
            as_labels(train_y),
            as_images(test_x),
            as_labels(test_y),
            list(fmt.classes),
            str(paths[0].parent.resolve()),
        )

    data = cached_arrays(name, [hash_files(paths)], build)
    data.location = str(paths[0].parent.resolve())
    return data
