"""``build_data``: one call from a dataset name or path to train / val / test streams on the training device.

Small datasets (registered names) use the on-device tensor pipeline; image folders given by path use DataLoader
workers (or, with ``pipeline="tensor"``, are decoded once into tensors when all images share a size).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from resnet.data.augment import EvalTransform, PolicyAugment, RandomResizedCropAugment, ScaleAugment
from resnet.data.decode import check_policy
from resnet.data.loader_pipeline import FolderDataset, LoaderEvalStream, LoaderTrainStream
from resnet.data.paths import PathLike
from resnet.data.policies import POLICIES, build_policy
from resnet.data.registry import DatasetSpec, dataset_name, resolve
from resnet.data.sources.base import ArrayDataset
from resnet.data.sources.folder import FolderSplit, ImageFolderIndex, index_folder
from resnet.data.sources.folder_arrays import folder_arrays
from resnet.data.stats import channel_mean_std, pixel_mean
from resnet.data.tensor_pipeline import Normalizer, TensorEvalStream, TensorTrainStream, generator
from resnet.errors import ConfigError, DataError

AUGMENTS = ("default", "rrc", "none")
NORMALIZES = ("channel", "pixel")
EVAL_VIEWS = ("center", "ten-crop", "full")
PIPELINES = ("auto", "tensor", "loader")
_SPLIT_TAG, _SUBSET_TAG = 0x5917, 0x5B5E7  # seed-derivation tags, so splits never correlate with shuffles

TrainStream = TensorTrainStream | LoaderTrainStream
EvalStream = TensorEvalStream | LoaderEvalStream


@dataclass
class DataBundle:
    """Everything a trainer needs. ``mean``/``std`` are per channel in [0, 1] units (before any expansion)."""

    train: TrainStream
    val: EvalStream | None
    test: EvalStream
    num_classes: int
    in_chans: int
    image_size: tuple[int, int]
    class_names: list[str]
    num_train: int
    num_val: int
    num_test: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str
    location: str
    pipeline: str = "tensor"
    notes: list[str] = field(default_factory=list)
    # How an image becomes a model input, saved in checkpoints (see resnet.train.meta): colour mode, shorter
    # side and crop, mean/std in [0, 1] units, and for normalize="pixel" the mean image (C, H, W) in [0, 1].
    preprocessing: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""  # content identity of the data (a resumed run must find the same)
    skipped: int = 0  # unreadable images skipped while decoding (loader streams count their own)


def preprocessing_record(
    channels: int,
    in_chans: int,
    resize: int,
    crop: tuple[int, int],
    mean: Tensor,
    std: Tensor,
    mean_image: Tensor | None,
) -> dict[str, Any]:
    """The preprocessing of a bundle from its statistics in [0, 255] units (as the pipelines hold them)."""
    return {
        "mode": "L" if channels == 1 else "RGB",
        "in_chans": in_chans,
        "resize": int(resize),
        "crop": [int(crop[0]), int(crop[1])],
        "mean": [float(v) for v in (mean.flatten() / 255).tolist()],
        "std": [float(v) for v in (std.flatten() / 255).tolist()],
        "mean_image": None if mean_image is None else (mean_image.float() / 255).contiguous(),
    }


def _check(option: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{option} must be one of {', '.join(allowed)}, got {value!r}")


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


def _default_val(n: int, has_own_val: bool, held_out: str) -> int:
    if has_own_val or held_out == "val":
        return 0  # a val/ split of its own (or val/ is the test set, the ImageNet convention): no carving
    return min(5000, n // 10)


def _resolve_in_chans(channels: int, in_chans: int | None) -> int:
    if in_chans is None or in_chans == channels:
        return channels
    if channels == 1 and in_chans > 1:
        return in_chans
    raise ConfigError(f"in_chans={in_chans} does not fit {channels}-channel images; only grayscale is expanded")


def _tensor_bundle(
    data: ArrayDataset,
    name: str,
    spec_val: int | None,
    *,
    val_size: int | None,
    subset: int | None,
    seed: int,
    batch_size: int,
    eval_batch_size: int,
    device: torch.device,
    augment: str,
    normalize: str,
    in_chans: int | None,
    channels_last: bool,
    rank: int,
    world_size: int,
    policy: str = "none",
    randaugment_ops: int = 2,
    randaugment_magnitude: int = 9,
    repeats: int = 1,
) -> DataBundle:
    if augment == "rrc":
        raise ConfigError(
            "augment='rrc' (RandomResizedCrop) is for image folders; small datasets use "
            "'default' (pad-4 crop + flip) or 'none'"
        )
    own_val = data.val_x is not None
    if val_size is None:
        n = len(data.train_y)  # a registered dataset's default val size, capped at a tenth for small copies
        val_size = min(spec_val, n // 10) if spec_val is not None else _default_val(n, own_val, data.test_split)
        val_size = 0 if own_val else val_size
    train_idx, val_idx = split_indices(len(data.train_y), val_size, subset, seed)
    train_x, train_y = data.train_x[train_idx], data.train_y[train_idx]
    if own_val and val_size == 0:
        val_x, val_y = data.val_x, data.val_y
    else:
        val_x, val_y = data.train_x[val_idx], data.train_y[val_idx]
    mean_c, std_c = channel_mean_std(train_x)
    mean = pixel_mean(train_x) if normalize == "pixel" else mean_c.reshape(-1, 1, 1)
    chans = _resolve_in_chans(train_x.shape[1], in_chans)
    norm = Normalizer(mean, std_c, chans, channels_last).to(device)
    train = TensorTrainStream(
        train_x.to(device),
        train_y.to(device),
        norm,
        batch_size=batch_size,
        seed=seed,
        augment=augment == "default",
        rank=rank,
        world_size=world_size,
        policy=build_policy(policy, num_ops=randaugment_ops, magnitude=randaugment_magnitude, small_images=True),
        repeats=repeats,
    )
    if len(train) == 0:
        raise ConfigError(f"batch_size {batch_size} exceeds the {train.num_samples} training images per rank")
    shard = {"rank": rank, "world_size": world_size}  # each rank evaluates its part; the trainer sums the parts
    val = TensorEvalStream(val_x.to(device), val_y.to(device), norm, eval_batch_size, **shard) if len(val_y) else None
    test = TensorEvalStream(data.test_x.to(device), data.test_y.to(device), norm, eval_batch_size, **shard)
    return DataBundle(
        train=train,
        val=val,
        test=test,
        num_classes=len(data.classes),
        in_chans=chans,
        image_size=train.image_size,
        class_names=list(data.classes),
        num_train=len(train_y),
        num_val=len(val_y),
        num_test=len(data.test_y),
        mean=tuple((mean_c / 255).tolist()),
        std=tuple((std_c / 255).tolist()),
        name=name,
        location=data.location,
        pipeline="tensor",
        notes=[f"skipped {data.skipped} unreadable image(s)"] if data.skipped else [],
        preprocessing=preprocessing_record(
            train_x.shape[1],
            chans,
            min(train.image_size),
            train.image_size,
            mean_c,
            std_c,
            mean if normalize == "pixel" else None,
        ),
        fingerprint=tensor_fingerprint(data),
        skipped=data.skipped,
    )


def tensor_fingerprint(data: ArrayDataset) -> str:
    """SHA-256 over the decoded images, labels and class names: the same data wherever it is stored."""
    digest = hashlib.sha256("|".join(data.classes).encode())
    for tensor in (data.train_x, data.train_y, data.test_x, data.test_y, data.val_x, data.val_y):
        if tensor is not None:
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def folder_fingerprint(index: ImageFolderIndex) -> str:
    """For folders read by workers (too large to hash): every split's file names, labels and archive sizes."""
    digest = hashlib.sha256("|".join(index.classes).encode())
    for name, split in sorted(index.splits.items()):
        digest.update(name.encode())
        offsets = getattr(split.reader, "offsets", {})
        for key, label in split.samples:
            digest.update(f"{key}|{label}|{offsets.get(key, ('', ''))[1]}\n".encode())
    return digest.hexdigest()


def sample_mean_std(split: FolderSplit, count: int = 256, seed: int = 0) -> tuple[Tensor, Tensor, int]:
    """Per-channel mean/std ([0, 255] units) estimated from a seeded sample of readable images."""
    from resnet.data.decode import BadImageError, decode_rgb

    order = torch.randperm(len(split.samples), generator=generator(seed, count)).tolist()
    total, total_sq, pixels, used = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), 0, 0
    for i in order:
        if used == count:
            break
        key = split.samples[i][0]
        try:
            image = decode_rgb(split.reader.read(key), split.reader.describe(key)).to(torch.float64)
        except BadImageError:
            continue  # statistics only; the bad-image policy applies when the image is actually used
        total += image.sum(dim=(1, 2))
        total_sq += image.square().sum(dim=(1, 2))
        pixels += image.shape[1] * image.shape[2]
        used += 1
    if not used:
        raise DataError(f"{split.source}: none of the sampled images could be decoded")
    mean = total / pixels
    return mean.float(), (total_sq / pixels - mean.square()).clamp_min(1e-12).sqrt().float(), used


def _loader_bundle(
    index: ImageFolderIndex,
    name: str,
    *,
    val_size: int | None,
    subset: int | None,
    seed: int,
    batch_size: int,
    eval_batch_size: int,
    device: torch.device,
    augment: str,
    normalize: str,
    in_chans: int | None,
    channels_last: bool,
    num_workers: int | None,
    on_bad_image: str,
    eval_view: str,
    crop_size: int,
    eval_crop_size: int | None,
    eval_resize: int | None,
    rank: int,
    world_size: int,
    policy: str = "none",
    randaugment_ops: int = 2,
    randaugment_magnitude: int = 9,
    repeats: int = 1,
) -> DataBundle:
    if normalize == "pixel":
        raise ConfigError("normalize='pixel' needs same-size images; image folders use 'channel'")
    chans = _resolve_in_chans(3, in_chans)
    full = index.splits["train"]
    own_val = index.held_out == "test" and "val" in index.splits
    if val_size is None:
        val_size = _default_val(len(full.samples), own_val, index.held_out)
    train_idx, val_idx = split_indices(len(full.samples), val_size, subset, seed)
    train_split = FolderSplit("train", full.reader, [full.samples[i] for i in train_idx.tolist()], full.source)
    if val_size:
        val_split: FolderSplit | None = FolderSplit(
            "val", full.reader, [full.samples[i] for i in val_idx.tolist()], full.source
        )
    else:
        val_split = index.splits["val"] if own_val else None
    test_split = index.splits[index.held_out]
    mean, std, _ = sample_mean_std(train_split, seed=seed)
    workers = min(8, os.cpu_count() or 1) if num_workers is None else num_workers
    if augment == "default":
        train_tf = ScaleAugment(crop_size)
    elif augment == "rrc":
        train_tf = RandomResizedCropAugment(crop_size)
    else:
        train_tf = EvalTransform("center", crop_size)
    chosen = build_policy(policy, num_ops=randaugment_ops, magnitude=randaugment_magnitude)
    if chosen is not None:
        if augment == "none":
            raise ConfigError(f"policy '{policy}' augments crops: use augment 'rrc' or 'default' with it, not 'none'")
        train_tf = PolicyAugment(train_tf, chosen)
    # FixRes: the evaluation view may be larger than the training crop (torchvision's recipe: train 176, eval 224).
    eval_tf = EvalTransform(eval_view, eval_crop_size or crop_size, eval_resize)
    eval_bs = 1 if eval_view == "full" else eval_batch_size

    def dataset(split: FolderSplit, transform) -> FolderDataset:
        return FolderDataset(split, transform, mean, std, on_bad_image)

    train = LoaderTrainStream(
        dataset(train_split, train_tf),
        batch_size=batch_size,
        seed=seed,
        device=device,
        num_workers=workers,
        channels_last=channels_last,
        rank=rank,
        world_size=world_size,
        repeats=repeats,
    )
    if len(train) == 0:
        raise ConfigError(f"batch_size {batch_size} exceeds the training images per rank")

    def evaluation(split: FolderSplit) -> LoaderEvalStream:
        return LoaderEvalStream(
            dataset(split, eval_tf),
            batch_size=eval_bs,
            device=device,
            num_workers=workers,
            channels_last=channels_last,
            rank=rank,
            world_size=world_size,
        )

    return DataBundle(
        train=train,
        val=evaluation(val_split) if val_split else None,
        test=evaluation(test_split),
        num_classes=len(index.classes),
        in_chans=chans,
        image_size=(crop_size, crop_size),
        class_names=list(index.classes),
        num_train=len(train_split.samples),
        num_val=len(val_split.samples) if val_split else 0,
        num_test=len(test_split.samples),
        mean=tuple((mean / 255).tolist()),
        std=tuple((std / 255).tolist()),
        name=name,
        location=str(index.root),
        pipeline="loader",
        preprocessing=preprocessing_record(3, chans, eval_tf.resize, (eval_tf.crop, eval_tf.crop), mean, std, None),
        fingerprint=folder_fingerprint(index),
    )


def build_data(
    dataset: str | os.PathLike,
    *,
    data_dir: PathLike | None = None,
    batch_size: int = 128,
    eval_batch_size: int | None = None,
    device: torch.device | str = "cpu",
    val_size: int | None = None,
    subset: int | None = None,
    seed: int = 0,
    augment: str = "default",
    normalize: str = "channel",
    in_chans: int | None = None,
    channels_last: bool = False,
    num_workers: int | None = None,
    download: bool = True,
    on_bad_image: str = "error",
    eval_view: str = "center",
    rank: int = 0,
    world_size: int = 1,
    crop_size: int = 224,
    pipeline: str = "auto",
    eval_crop_size: int | None = None,
    eval_resize: int | None = None,
    policy: str = "none",
    randaugment_ops: int = 2,
    randaugment_magnitude: int = 9,
    repeats: int = 1,
) -> DataBundle:
    """Train / val / test streams for a registered dataset or an image folder (see docs/data.md).

    ``crop_size``, ``eval_crop_size`` and ``eval_resize`` (FixRes) apply to image folders only (small datasets
    train and test on whole images); ``policy`` is a torchvision augmentation policy (see
    :mod:`resnet.data.policies`) and ``repeats`` the repeated-augmentation count; ``pipeline`` picks
    the tensor pipeline ("tensor") or DataLoader workers ("loader") for folders; "auto" uses tensors for
    registered names and workers for paths.
    """
    for option, value, allowed in (
        ("augment", augment, AUGMENTS),
        ("normalize", normalize, NORMALIZES),
        ("eval_view", eval_view, EVAL_VIEWS),
        ("pipeline", pipeline, PIPELINES),
        ("policy", policy, POLICIES),
    ):
        _check(option, value, allowed)
    check_policy(on_bad_image)
    if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
        raise ConfigError("batch sizes must be positive")
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
    eval_bs = eval_batch_size if eval_batch_size is not None else max(batch_size, 256)
    device = torch.device(device)
    target = resolve(dataset)
    common = dict(
        val_size=val_size,
        subset=subset,
        seed=seed,
        batch_size=batch_size,
        eval_batch_size=eval_bs,
        device=device,
        augment=augment,
        normalize=normalize,
        in_chans=in_chans,
        channels_last=channels_last,
        rank=rank,
        world_size=world_size,
        policy=policy,
        randaugment_ops=randaugment_ops,
        randaugment_magnitude=randaugment_magnitude,
        repeats=repeats,
    )
    if isinstance(target, DatasetSpec):
        data = target.load(data_dir, download, on_bad_image)
        return _tensor_bundle(data, target.name, target.default_val, **common)
    index = index_folder(Path(target))
    name = dataset_name(Path(target))
    if pipeline == "tensor":
        return _tensor_bundle(folder_arrays(name, index, on_bad_image), name, None, **common)
    return _loader_bundle(
        index,
        name,
        num_workers=num_workers,
        on_bad_image=on_bad_image,
        eval_view=eval_view,
        crop_size=crop_size,
        eval_crop_size=eval_crop_size,
        eval_resize=eval_resize,
        **common,
    )
