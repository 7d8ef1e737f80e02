"""Datasets and input pipelines.

>>> from resnet.data import DataConfig, build_data, load_data
>>> data = build_data(DataConfig("fashion-mnist", batch_size=128), in_chans=1)   # doctest: +SKIP
>>> data = load_data("fashion-mnist", batch_size=128, in_chans=1)               # doctest: +SKIP (keywords)
>>> for x, y in data.train.epoch(0): ...                                        # doctest: +SKIP

Registered names: cifar10, cifar100, mnist, fashion-mnist, cifar10-jpeg; any path to an image folder (or its
.tar / .tar.gz) works too. See docs/data.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from resnet.lazy import lazy_exports

if TYPE_CHECKING:  # the names, for type checkers; at run time each loads on first use (a fast CLI)
    from resnet.data import views
    from resnet.data.build import build_data, check_data_config, load_data
    from resnet.data.bundle import DataBundle, EvalStream, TrainingData, TrainStream
    from resnet.data.config import DataConfig
    from resnet.data.info import dataset_info
    from resnet.data.paths import cache_dir, data_roots
    from resnet.data.registry import canonical_dataset, list_datasets, resolve
    from resnet.data.splits import split_indices, stratified_subset, validation_size
    from resnet.data.tensor_pipeline import pad_crop_flip
    from resnet.data.views import center_crop, full_image, ten_crop

_EXPORTS: dict[str, str] = {
    "DataBundle": "resnet.data.bundle",
    "DataConfig": "resnet.data.config",
    "EvalStream": "resnet.data.bundle",
    "TrainStream": "resnet.data.bundle",
    "TrainingData": "resnet.data.bundle",
    "build_data": "resnet.data.build",
    "cache_dir": "resnet.data.paths",
    "canonical_dataset": "resnet.data.registry",
    "center_crop": "resnet.data.views",
    "check_data_config": "resnet.data.build",
    "data_roots": "resnet.data.paths",
    "dataset_info": "resnet.data.info",
    "full_image": "resnet.data.views",
    "list_datasets": "resnet.data.registry",
    "load_data": "resnet.data.build",
    "pad_crop_flip": "resnet.data.tensor_pipeline",
    "resolve": "resnet.data.registry",
    "split_indices": "resnet.data.splits",
    "stratified_subset": "resnet.data.splits",
    "ten_crop": "resnet.data.views",
    "validation_size": "resnet.data.splits",
    "views": "resnet.data.views",
}

__all__ = [
    "DataBundle",
    "DataConfig",
    "EvalStream",
    "TrainStream",
    "TrainingData",
    "build_data",
    "cache_dir",
    "canonical_dataset",
    "center_crop",
    "check_data_config",
    "data_roots",
    "dataset_info",
    "full_image",
    "list_datasets",
    "load_data",
    "pad_crop_flip",
    "resolve",
    "split_indices",
    "stratified_subset",
    "ten_crop",
    "validation_size",
    "views",
]


_load = lazy_exports(__name__, _EXPORTS)


def __getattr__(name: str) -> Any:
    return _load(name, globals())
