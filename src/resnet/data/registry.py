"""Registered dataset names, and resolving ``NAME|PATH`` to a registered dataset or an image folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from resnet.data.paths import PathLike, data_roots
from resnet.data.sources.base import ArrayDataset
from resnet.data.sources.cifar import CIFAR10, CIFAR100, load_cifar
from resnet.data.sources.folder import ARCHIVE_SUFFIXES, LAYOUT, folder_arrays, index_folder
from resnet.data.sources.idx import FASHION_MNIST, MNIST, load_idx
from resnet.errors import ConfigError, DataNotFoundError

Loader = Callable[[PathLike | None, bool, str], ArrayDataset]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered small dataset: decoded once into tensors by ``load(data_dir, download, on_bad_image)``."""

    name: str
    description: str
    load: Loader
    default_val: int = 5000  # images carved from the training set for validation by default


def _cifar10_jpeg(data_dir: PathLike | None, download: bool, on_bad_image: str) -> ArrayDataset:
    roots = data_roots(data_dir)
    for root in roots:
        if (root / "cifar10-jpeg").exists():
            return folder_arrays("cifar10-jpeg", index_folder(root / "cifar10-jpeg"), on_bad_image)
    raise DataNotFoundError(
        f"cifar10-jpeg not found (it has no download); looked in {', '.join(str(r / 'cifar10-jpeg') for r in roots)}"
        f"; pass --data-dir to the folder holding cifar10-jpeg/train.tar.gz and test.tar.gz ({LAYOUT})"
    )


REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "cifar10",
            "CIFAR-10, official python format, 32x32 RGB, 10 classes",
            lambda d, dl, _: load_cifar(CIFAR10, "cifar10", d, dl),
        ),
        DatasetSpec(
            "cifar100",
            "CIFAR-100, official python format, 32x32 RGB, 100 classes",
            lambda d, dl, _: load_cifar(CIFAR100, "cifar100", d, dl),
        ),
        DatasetSpec(
            "mnist",
            "MNIST, official IDX files, 28x28 grayscale, 10 classes",
            lambda d, dl, _: load_idx(MNIST, "mnist", d, dl),
        ),
        DatasetSpec(
            "fashion-mnist",
            "Fashion-MNIST, official IDX files, 28x28 grayscale, 10 classes",
            lambda d, dl, _: load_idx(FASHION_MNIST, "fashion-mnist", d, dl),
        ),
        DatasetSpec("cifar10-jpeg", "CIFAR-10 as JPEG class folders (train/test .tar.gz), 32x32 RGB", _cifar10_jpeg),
    )
}
ALIASES = {
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
    "fmnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "cifar10_jpeg": "cifar10-jpeg",
}


def list_datasets() -> list[str]:
    """Registered dataset names (any image folder path is accepted as well)."""
    return sorted(REGISTRY)


def resolve(name_or_path: str | os.PathLike) -> DatasetSpec | Path:
    """A registered name (case-insensitive, with aliases) or an existing path to an image folder / archive."""
    text = os.fspath(name_or_path)
    key = ALIASES.get(text.lower(), text.lower())
    if key in REGISTRY and os.sep not in text:
        return REGISTRY[key]
    path = Path(text).expanduser()
    if path.exists() or os.sep in text or text.endswith(ARCHIVE_SUFFIXES):
        return path  # clearly meant as a path: a missing one gets the layout error from the indexer
    raise ConfigError(
        f"unknown dataset {text!r}: neither a registered name ({', '.join(list_datasets())}) nor an existing "
        f"path to an image folder or .tar/.tar.gz ({LAYOUT})"
    )


def canonical_dataset(name_or_path: str) -> str:
    """A registered name as it is, a path made absolute: a run records where its data was, wherever it is read
    from later (``resnet eval`` in another directory must not find other data under the same relative path)."""
    try:
        target = resolve(name_or_path)
    except ConfigError:
        return name_or_path  # not data this package finds (a bundle given in Python): left as named
    return str(target.resolve()) if isinstance(target, Path) and target.exists() else name_or_path


def dataset_name(path: Path) -> str:
    """A readable name for a folder dataset: the folder (or archive) name without suffixes."""
    return path.resolve().name.split(".")[0] or "folder"
