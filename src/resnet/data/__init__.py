"""Datasets and input pipelines.

>>> from resnet.data import DataConfig, build_data, load_data
>>> data = build_data(DataConfig("fashion-mnist", batch_size=128), in_chans=1)   # doctest: +SKIP
>>> data = load_data("fashion-mnist", batch_size=128, in_chans=1)               # doctest: +SKIP (keywords)
>>> for x, y in data.train.epoch(0): ...                                        # doctest: +SKIP

Registered names: cifar10, cifar100, mnist, fashion-mnist, cifar10-jpeg; any path to an image folder (or its
.tar / .tar.gz) works too. See docs/data.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from resnet.lazy import lazy_package

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

__getattr__, __all__ = lazy_package(__name__, __file__)
