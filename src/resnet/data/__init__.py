"""Datasets and input pipelines.

>>> from resnet.data import build_data
>>> data = build_data("fashion-mnist", batch_size=128, in_chans=1)   # doctest: +SKIP
>>> for x, y in data.train.epoch(0): ...                             # doctest: +SKIP

Registered names: cifar10, cifar100, mnist, fashion-mnist, cifar10-jpeg; any path to an image folder (or its
.tar / .tar.gz) works too. See docs/data.md.
"""

from resnet.data import views
from resnet.data.build import DataBundle, EvalStream, TrainStream, build_data, split_indices
from resnet.data.info import dataset_info
from resnet.data.paths import cache_dir, data_roots
from resnet.data.registry import list_datasets, resolve
from resnet.data.tensor_pipeline import pad_crop_flip
from resnet.data.views import center_crop, full_image, multi_scale, ten_crop

__all__ = [
    "DataBundle",
    "EvalStream",
    "TrainStream",
    "build_data",
    "cache_dir",
    "center_crop",
    "data_roots",
    "dataset_info",
    "full_image",
    "list_datasets",
    "multi_scale",
    "pad_crop_flip",
    "resolve",
    "split_indices",
    "ten_crop",
    "views",
]
