"""``dataset_info``: what ``resnet data info`` prints — location, split sizes, class counts, size, mean/std."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from resnet.data.build import sample_mean_std
from resnet.data.decode import check_policy, decode_rgb
from resnet.data.paths import PathLike
from resnet.data.registry import DatasetSpec, dataset_name, resolve
from resnet.data.sources.folder import index_folder
from resnet.data.stats import channel_mean_std, class_counts


def dataset_info(
    name_or_path: str | os.PathLike,
    data_dir: PathLike | None = None,
    download: bool = True,
    on_bad_image: str = "error",
) -> dict[str, Any]:
    """Describe a dataset. Mean/std are per channel, [0, 1] units, over the whole training split (for image
    folders: estimated from a sample of 256 images, and the image size is that sample's range)."""
    check_policy(on_bad_image)
    target = resolve(name_or_path)
    if isinstance(target, DatasetSpec):
        data = target.load(data_dir, download, on_bad_image)
        mean, std = channel_mean_std(data.train_x)
        n_train = len(data.train_y)
        info: dict[str, Any] = {
            "name": target.name,
            "description": target.description,
            "location": data.location,
            "splits": {"train": n_train, data.test_split: len(data.test_y)},
            "default_split": {"train": n_train - target.default_val, "val": target.default_val},
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
        return info
    index = index_folder(Path(target))
    train = index.splits["train"]
    mean, std, used = sample_mean_std(train)
    sizes = []
    for key, _ in train.samples[:: max(1, len(train.samples) // 64)][:64]:
        try:
            sizes.append(tuple(decode_rgb(train.reader.read(key), key).shape[1:]))
        except Exception:
            continue
    label_counts = {
        name: [sum(1 for _, y in split.samples if y == c) for c in range(len(index.classes))]
        for name, split in index.splits.items()
    }
    return {
        "name": dataset_name(Path(target)),
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
    }
