"""Which images train and which validate: one seeded rule shared by training, ``data info`` and evaluation.

``resnet eval --split val`` must see exactly the images that training held out, so the default validation size
and the carving live here once.
"""

from __future__ import annotations

import torch
from torch import Tensor

from resnet.data.tensor_pipeline import generator
from resnet.errors import ConfigError

_SPLIT_TAG, _SUBSET_TAG = 0x5917, 0x5B5E7  # seed-derivation tags, so splits never correlate with shuffles
DEFAULT_VAL_CAP = 5000  # images carved from a training set without its own validation split (at most a tenth)


def validation_size(
    num_train: int,
    requested: int | None,
    *,
    registered_default: int | None = None,
    own_val: bool = False,
    held_out: str = "test",
) -> int:
    """Images carved from the training set for validation: ``requested`` when given, else none when the data has
    a validation split of its own (or ``val/`` is the test set, the ImageNet convention), else the dataset's
    default (5,000 for folders) capped at a tenth of the training set, so that ``--subset``-sized copies work."""
    if requested is not None:
        return requested
    if own_val or held_out == "val":
        return 0
    cap = registered_default if registered_default is not None else DEFAULT_VAL_CAP
    return min(cap, num_train // 10)


def stratified_subset(labels: Tensor, count: int, seed: int = 0) -> Tensor:
    """``count`` of the images (sorted indices), the same share of every class, drawn with ``seed``: a quick
    evaluation whose class balance is the full set's."""
    if count >= len(labels):
        return torch.arange(len(labels))
    order = torch.randperm(len(labels), generator=generator(seed, _SUBSET_TAG))
    by_class: dict[int, list[int]] = {}
    for index in order.tolist():
        by_class.setdefault(int(labels[index]), []).append(index)
    share = count / len(labels)
    quota = {label: int(len(items) * share) for label, items in by_class.items()}
    left = count - sum(quota.values())
    for label in sorted(by_class, key=lambda c: len(by_class[c]) * share - quota[c], reverse=True)[:left]:
        quota[label] += 1  # largest remainders first, so the total is exactly ``count``
    chosen = [index for label, items in by_class.items() for index in items[: quota[label]]]
    return torch.tensor(sorted(chosen), dtype=torch.long)


def split_indices(n: int, val_size: int, subset: int | None, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded, deterministic ``(train, val)`` indices of a training set of ``n`` images (both sorted)."""
    if not 0 <= val_size < n:
        raise ConfigError(f"val_size must be in [0, {n - 1}] for a training set of {n} images, got {val_size}")
    perm = torch.randperm(n, generator=generator(seed, _SPLIT_TAG))
    val, train = perm[:val_size].sort().values, perm[val_size:]
    if subset is not None:
        if not 0 < subset <= len(train):
            raise ConfigError(
                f"subset must be in [1, {len(train)}] (training images after the val split), got {subset}"
            )
        train = train[torch.randperm(len(train), generator=generator(seed, _SUBSET_TAG))[:subset]]
    return train.sort().values, val
