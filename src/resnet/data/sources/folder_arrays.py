"""Decoding a small image folder (e.g. the CIFAR-10 JPEG copy) once into uint8 tensors.

One sequential pass per split (a ``.tar.gz`` is streamed, not extracted); the result goes to the tensor cache, so
later runs skip decoding entirely.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import torch
from torch import Tensor

from resnet.data.decode import DECODER_VERSION, BadImageError, check_policy, decode_rgb
from resnet.data.sources.base import ArrayDataset, cached_arrays
from resnet.data.sources.folder import FolderSplit, ImageFolderIndex
from resnet.errors import DataError


def decoded_images(
    split: FolderSplit, keys: list[str], on_bad_image: str, bad: list[str]
) -> Iterator[tuple[str, Tensor]]:
    """``(key, image)`` of each readable image of ``keys``, in one sequential pass (a ``.tar.gz`` is streamed); a
    bad image stops with its name, or with ``on_bad_image="skip"`` its key is added to ``bad``."""
    try:
        for key, data in split.reader.iter_bytes(keys):
            try:
                image = decode_rgb(data, split.reader.describe(key))
            except BadImageError:
                if on_bad_image == "error":
                    raise
                bad.append(key)
                continue
            yield key, image
    except OSError as error:
        raise DataError(f"cannot read {split.source}: {error}; the file is corrupt or truncated") from error


def _decode_split(split: FolderSplit, on_bad_image: str, bad: list[str]) -> tuple[Tensor, Tensor]:
    labels = dict(split.samples)
    images = dict(decoded_images(split, [k for k, _ in split.samples], on_bad_image, bad))
    skipped = set(bad)
    missing = [k for k, _ in split.samples if k not in images and k not in skipped]
    if missing:
        raise DataError(f"{split.source}: {len(missing)} image(s) could not be read, e.g. {missing[0]}")
    keys = [k for k, _ in split.samples if k in images]
    if not keys:
        raise DataError(f"{split.source}: no readable images")
    shapes = {tuple(images[k].shape) for k in keys}
    if len(shapes) > 1:
        examples = sorted(shapes)[:3]
        raise DataError(
            f"{split.source}: images differ in size ({', '.join('x'.join(map(str, s[1:])) for s in examples)}); "
            "only same-size images can be decoded into one tensor; use the DataLoader pipeline "
            "(--set data.pipeline=loader)"
        )
    x = torch.stack([images.pop(k) for k in keys])
    y = torch.tensor([labels[k] for k in keys], dtype=torch.int64)
    return x, y


def folder_arrays(name: str, index: ImageFolderIndex, on_bad_image: str = "error") -> ArrayDataset:
    """Decode all splits of a small image folder into an :class:`ArrayDataset` (through the tensor cache)."""
    check_policy(on_bad_image)

    def build() -> ArrayDataset:
        bad: list[str] = []
        train_x, train_y = _decode_split(index.splits["train"], on_bad_image, bad)
        test_x, test_y = _decode_split(index.splits[index.held_out], on_bad_image, bad)
        val_x = val_y = None
        if index.held_out == "test" and "val" in index.splits:
            val_x, val_y = _decode_split(index.splits["val"], on_bad_image, bad)
        data = ArrayDataset(
            train_x,
            train_y,
            test_x,
            test_y,
            list(index.classes),
            str(index.root),
            skipped=len(bad),
            test_split=index.held_out,
            val_x=val_x,
            val_y=val_y,
        )
        return data

    data = cached_arrays(name, [index.content_key(), on_bad_image, DECODER_VERSION], build)
    if data.skipped:
        warnings.warn(f"{index.root}: skipped {data.skipped} unreadable image(s) (--on-bad-image skip)", stacklevel=2)
    data.location = str(index.root.resolve())
    return data
