"""``dataset_info``: what ``resnet data info`` prints — location, split sizes, class counts, size, mean/std."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor

from resnet.data.bundle import channel_mean_std, sample_mean_std
from resnet.data.config import check_choice
from resnet.data.paths import PathLike
from resnet.data.registry import DatasetSpec, dataset_name, resolve
from resnet.data.sources.folder import FolderSplit, decoded_images, index_folder
from resnet.data.splits import validation_size
from resnet.errors import ConfigError

AUTO_CHECK_LIMIT = 20_000  # image folders up to this size are decoded completely by `resnet data info`


def dataset_info(
    name_or_path: str | os.PathLike,
    data_dir: PathLike | None = None,
    download: bool = True,
    on_bad_image: str = "error",
    check: str = "auto",
) -> dict[str, Any]:
    """Describe a dataset. Mean/std are per channel, [0, 1] units, over the whole training split (for image
    folders: estimated from a sample of 256 images, and the image size is that sample's range).

    Image folders are also checked for unreadable images: every image (``check="all"``; the default for folders
    of up to 20,000 images) or an even sample of 64 per split (``"sample"``). A bad image stops with its name, or
    with ``on_bad_image="skip"`` is counted in ``skipped``.
    """
    check_choice("on_bad_image", on_bad_image)
    if check not in ("auto", "all", "sample"):
        raise ConfigError(f"check must be auto, all or sample, got {check!r}")
    target = resolve(name_or_path)
    if isinstance(target, DatasetSpec):
        data = target.load(data_dir, download, on_bad_image)
        mean, std = channel_mean_std(data.train_x)
        n_train = len(data.train_y)
        return {
            "name": target.name,
            "description": target.description,
            "location": data.location,
            "splits": {"train": n_train, data.test_split: len(data.test_y)},
            "default_split": {
                "train": n_train - (val := validation_size(n_train, None, registered_default=target.default_val)),
                "val": val,
            },
            "classes": list(data.classes),
            "class_counts": {
                "train": class_counts(data.train_y, len(data.classes)),
                data.test_split: class_counts(data.test_y, len(data.classes)),
            },
            "image_size": (int(data.train_x.shape[2]), int(data.train_x.shape[3])),
            "channels": int(data.train_x.shape[1]),
            "mean": tuple((mean / 255).tolist()),
            "std": tuple((std / 255).tolist()),
            "stats_from": f"all {n_train} training images",
            "skipped": data.skipped,
        }
    index = index_folder(target)
    train = index.splits["train"]
    total = sum(len(split.samples) for split in index.splits.values())
    if check == "auto":
        check = "all" if total <= AUTO_CHECK_LIMIT else "sample"
    sizes: list[tuple[int, ...]] = []
    bad: list[str] = []
    checked = sum(_check_split(split, on_bad_image, check == "all", bad, sizes) for split in index.splits.values())
    mean, std, used = sample_mean_std(train)
    label_counts = {
        name: class_counts(torch.tensor([y for _, y in split.samples], dtype=torch.int64), len(index.classes))
        for name, split in index.splits.items()
    }
    return {
        "name": dataset_name(target),
        "description": "image folder",
        "location": str(index.root),
        "splits": {name: len(split.samples) for name, split in index.splits.items()},
        "test_split": index.held_out,
        "classes": list(index.classes),
        "class_counts": label_counts,
        "image_size": sizes[0] if len(set(sizes)) == 1 else (min(sizes), max(sizes)) if sizes else None,
        "channels": 3,
        "mean": tuple((mean / 255).tolist()),
        "std": tuple((std / 255).tolist()),
        "stats_from": f"a seeded sample of {used} training images",
        "ignored_files": len(index.ignored),
        "images_checked": checked,
        "skipped": len(bad),
        "skipped_examples": bad[:3],
    }


def class_counts(labels: Tensor, num_classes: int) -> list[int]:
    """Images per class."""
    return torch.bincount(labels.cpu(), minlength=num_classes).tolist()


def _check_split(split: FolderSplit, on_bad_image: str, everything: bool, bad: list[str], sizes: list) -> int:
    """Decode the split's images (all, or an even sample of 64); a bad one stops with its name or is counted."""
    keys = [key for key, _ in split.samples]
    if not everything:
        keys = keys[:: max(1, len(keys) // 64)][:64]
    skipped: list[str] = []
    decoded = 0
    for _, image in decoded_images(split, keys, on_bad_image, skipped):
        decoded += 1
        if split.name == "train" and len(sizes) < 64:
            sizes.append(tuple(image.shape[1:]))
    bad.extend(split.reader.describe(key) for key in skipped)
    return decoded + len(skipped)
