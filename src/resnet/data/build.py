"""``build_data``: one call from a :class:`DataConfig` to train / val / test streams on the training device.

Small datasets (registered names) use the on-device tensor pipeline; image folders given by path use the one their
images call for (``choice.py``: small same-size images are decoded once into tensors, others go to DataLoader
workers), or the one ``pipeline`` names.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from resnet.data.augment import EvalTransform, PolicyAugment, RandomResizedCropAugment, ScaleAugment, build_policy
from resnet.data.bundle import (
    DataBundle,
    channel_mean_std,
    folder_fingerprint,
    pixel_mean,
    preprocessing_record,
    sample_mean_std,
    tensor_fingerprint,
)
from resnet.data.choice import DEFAULT_CROP, choose_pipeline
from resnet.data.config import DATA_CHOICES, DataConfig, check_choice
from resnet.data.loader_pipeline import FolderDataset, LoaderEvalStream, LoaderTrainStream
from resnet.data.registry import DatasetSpec, dataset_name, resolve
from resnet.data.sources.base import ArrayDataset
from resnet.data.sources.folder import FolderSplit, ImageFolderIndex, folder_arrays, index_folder
from resnet.data.splits import split_indices, validation_size
from resnet.data.tensor_pipeline import Normalizer, TensorEvalStream, TensorTrainStream
from resnet.errors import ConfigError

# ITU-R 601-2 luma, the weights of PIL's convert("L"): a checkpoint trained on converted images predicts on files
# read with mode "L" exactly as it trained.
_LUMA = (299, 587, 114)


@dataclass(frozen=True)
class _Placement:
    """Where and how the streams are made: not part of the data's identity."""

    device: torch.device
    seed: int
    rank: int
    world_size: int
    channels_last: bool
    in_chans: int | None


def _resolve_in_chans(channels: int, in_chans: int | None) -> int:
    if in_chans is None or in_chans == channels:
        return channels
    if channels == 1 and in_chans > 1:
        return in_chans
    if channels == 3 and in_chans == 1:
        return 1  # converted to grayscale
    raise ConfigError(
        f"in_chans={in_chans} does not fit {channels}-channel images; grayscale is expanded to any number of "
        "channels and RGB converted to grayscale (in_chans=1), nothing else"
    )


def to_grayscale(images: Tensor) -> Tensor:
    """uint8 (N, 3, H, W) -> (N, 1, H, W) with PIL's rounding."""
    r, g, b = (images[:, i : i + 1].to(torch.int32) for i in range(3))
    return ((r * _LUMA[0] + g * _LUMA[1] + b * _LUMA[2] + 500) // 1000).to(torch.uint8)


def _grayscale_arrays(data: ArrayDataset) -> ArrayDataset:
    val_x = None if data.val_x is None else to_grayscale(data.val_x)
    return dataclasses.replace(data, train_x=to_grayscale(data.train_x), test_x=to_grayscale(data.test_x), val_x=val_x)


def _carve(
    num_train: int, cfg: DataConfig, seed: int, *, own_val: bool, held_out: str, spec_val: int | None = None
) -> tuple[Tensor, Tensor | None]:
    """The training indices, and the validation indices carved from the training set (``None`` when nothing is
    carved: the data's own validation split validates, if it has one). Training, ``data info`` and evaluation all
    come through here, so ``eval --split val`` sees exactly the images training held out."""
    size = validation_size(num_train, cfg.val_size, registered_default=spec_val, own_val=own_val, held_out=held_out)
    train, val = split_indices(num_train, size, cfg.subset, seed)
    return train, (val if size else None)


def _array_splits(
    data: ArrayDataset, spec_val: int | None, cfg: DataConfig, seed: int
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """``(train indices, val images, val labels, carved val indices)`` of decoded data (an empty val when none)."""
    train, val = _carve(
        len(data.train_y), cfg, seed, own_val=data.val_x is not None, held_out=data.test_split, spec_val=spec_val
    )
    if val is None and data.val_x is not None and data.val_y is not None:
        return train, data.val_x, data.val_y, None
    chosen = val if val is not None else train[:0]
    return train, data.train_x[chosen], data.train_y[chosen], val


def _pick(split: FolderSplit, name: str, indices: Tensor) -> FolderSplit:
    return FolderSplit(name, split.reader, [split.samples[i] for i in indices.tolist()], split.source)


def _folder_splits(
    index: ImageFolderIndex, cfg: DataConfig, seed: int
) -> tuple[FolderSplit, FolderSplit | None, Tensor | None]:
    """``(train, val or None, carved val indices)`` of an image folder."""
    full = index.splits["train"]
    own_val = index.held_out == "test" and "val" in index.splits
    train, val = _carve(len(full.samples), cfg, seed, own_val=own_val, held_out=index.held_out)
    if val is not None:
        return _pick(full, "train", train), _pick(full, "val", val), val
    return _pick(full, "train", train), index.splits["val"] if own_val else None, None


def _tensor_bundle(data: ArrayDataset, name: str, spec_val: int | None, cfg: DataConfig, at: _Placement) -> DataBundle:
    if cfg.augment == "rrc":
        raise ConfigError(
            "augment='rrc' (RandomResizedCrop) is for image folders; small datasets use "
            "'default' (pad-4 crop + flip) or 'none'"
        )
    chans = _resolve_in_chans(data.train_x.shape[1], at.in_chans)
    if chans == 1 and data.train_x.shape[1] == 3:
        data = _grayscale_arrays(data)
    train_idx, val_x, val_y, val_idx = _array_splits(data, spec_val, cfg, at.seed)
    train_x, train_y = data.train_x[train_idx], data.train_y[train_idx]
    mean_c, std_c = channel_mean_std(train_x)
    mean = pixel_mean(train_x) if cfg.normalize == "pixel" else mean_c.reshape(-1, 1, 1)
    norm = Normalizer(mean, std_c, chans, at.channels_last).to(at.device)
    policy = build_policy(
        cfg.policy, num_ops=cfg.randaugment_ops, magnitude=cfg.randaugment_magnitude, small_images=True
    )
    train = TensorTrainStream(
        train_x.to(at.device),
        train_y.to(at.device),
        norm,
        batch_size=cfg.batch_size,
        seed=at.seed,
        augment=cfg.augment == "default",
        rank=at.rank,
        world_size=at.world_size,
        policy=policy,
        repeats=cfg.repeats,
    )
    if len(train) == 0:
        raise ConfigError(f"batch_size {cfg.batch_size} exceeds the {train.num_samples} training images per rank")
    shard = {"rank": at.rank, "world_size": at.world_size}  # each rank evaluates its part; the trainer sums them
    bs = cfg.evaluation_batch()
    val = TensorEvalStream(val_x.to(at.device), val_y.to(at.device), norm, bs, **shard) if len(val_y) else None
    test = TensorEvalStream(data.test_x.to(at.device), data.test_y.to(at.device), norm, bs, **shard)
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
        preprocessing=preprocessing_record(
            train_x.shape[1],
            chans,
            min(train.image_size),
            train.image_size,
            mean_c,
            std_c,
            mean if cfg.normalize == "pixel" else None,
        ),
        fingerprint=tensor_fingerprint(data),
        skipped=data.skipped,
        val_indices=val_idx,
    )


def _loader_bundle(index: ImageFolderIndex, name: str, cfg: DataConfig, at: _Placement) -> DataBundle:
    if cfg.normalize == "pixel":
        raise ConfigError("normalize='pixel' needs same-size images; image folders use 'channel'")
    if at.in_chans == 1:
        raise ConfigError(
            "in_chans=1 converts RGB images to grayscale in the tensor pipeline only; add "
            "--set data.pipeline=tensor (same-size images), or train on 3 channels"
        )
    chans = _resolve_in_chans(3, at.in_chans)
    train_split, val_split, val_idx = _folder_splits(index, cfg, at.seed)
    test_split = index.splits[index.held_out]
    mean, std, _ = sample_mean_std(train_split, seed=at.seed)
    workers = cfg.workers()
    crop = cfg.crop_size or DEFAULT_CROP
    train_tf: Any
    if cfg.augment == "default":
        train_tf = ScaleAugment(crop)
    elif cfg.augment == "rrc":
        train_tf = RandomResizedCropAugment(crop)
    else:
        train_tf = EvalTransform("center", crop)
    chosen = build_policy(cfg.policy, num_ops=cfg.randaugment_ops, magnitude=cfg.randaugment_magnitude)
    if chosen is not None:
        if cfg.augment == "none":
            raise ConfigError(
                f"policy '{cfg.policy}' augments crops: use augment 'rrc' or 'default' with it, not 'none'"
            )
        train_tf = PolicyAugment(train_tf, chosen)
    # FixRes: the evaluation view may be larger than the training crop (torchvision's recipe: train 176, eval 224).
    eval_tf = EvalTransform(cfg.eval_view, cfg.eval_crop_size or crop, cfg.eval_resize)
    eval_bs = 1 if cfg.eval_view == "full" else cfg.evaluation_batch()

    def dataset(split: FolderSplit, transform: Any) -> FolderDataset:
        return FolderDataset(split, transform, mean, std, cfg.on_bad_image)

    train = LoaderTrainStream(
        dataset(train_split, train_tf),
        batch_size=cfg.batch_size,
        seed=at.seed,
        device=at.device,
        num_workers=workers,
        channels_last=at.channels_last,
        rank=at.rank,
        world_size=at.world_size,
        repeats=cfg.repeats,
    )
    if len(train) == 0:
        raise ConfigError(f"batch_size {cfg.batch_size} exceeds the training images per rank")

    def evaluation(split: FolderSplit) -> LoaderEvalStream:
        return LoaderEvalStream(
            dataset(split, eval_tf),
            batch_size=eval_bs,
            device=at.device,
            num_workers=workers,
            channels_last=at.channels_last,
            rank=at.rank,
            world_size=at.world_size,
        )

    return DataBundle(
        train=train,
        val=evaluation(val_split) if val_split else None,
        test=evaluation(test_split),
        num_classes=len(index.classes),
        in_chans=chans,
        image_size=(crop, crop),
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
        val_indices=val_idx,
    )


def check_data_config(cfg: DataConfig) -> None:
    """The checks that need no data: choices, batch sizes (run before anything is read or written)."""
    for key in DATA_CHOICES:
        option = key.split(".", 1)[1]
        check_choice(option, getattr(cfg, option))
    if cfg.batch_size < 1 or (cfg.eval_batch_size is not None and cfg.eval_batch_size < 1):
        raise ConfigError("batch sizes must be positive")


def build_data(
    cfg: DataConfig,
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    shard: tuple[int, int] = (0, 1),
    channels_last: bool = False,
    in_chans: int | None = None,
) -> DataBundle:
    """Train / val / test streams for ``cfg`` (a registered dataset or an image folder; see docs/data.md).

    The rest is placement: the ``device`` the streams yield on, the ``seed`` of the split and the shuffles, the
    ``(rank, world_size)`` shard of a distributed run, the memory format, and the model's ``in_chans`` (grayscale
    is expanded to it; RGB is converted to grayscale for ``in_chans=1``).
    """
    check_data_config(cfg)
    rank, world_size = shard
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
    at = _Placement(torch.device(device), seed, rank, world_size, channels_last, in_chans)
    target = resolve(cfg.dataset)
    if isinstance(target, DatasetSpec):
        data = target.load(cfg.data_dir, cfg.download, cfg.on_bad_image)
        return _tensor_bundle(data, target.name, target.default_val, cfg, at)
    index, name = index_folder(target), dataset_name(target)
    choice = choose_pipeline(cfg, index)
    if choice.pipeline == "tensor":
        bundle = _tensor_bundle(folder_arrays(name, index, cfg.on_bad_image), name, None, cfg, at)
    else:
        bundle = _loader_bundle(index, name, cfg, at)
    bundle.pipeline_reason = choice.reason
    return bundle


@dataclass
class HeldOut:
    """One evaluation split of a dataset, chosen exactly as training chose it: decoded images (``images``,
    ``labels``; ``indices`` of a validation split carved from the training set) or a folder's files (``files``)."""

    name: str
    location: str
    classes: list[str]
    images: Tensor | None = None
    labels: Tensor | None = None
    indices: Tensor | None = None
    files: FolderSplit | None = None


def held_out_split(cfg: DataConfig, split: str, *, seed: int, decode: bool) -> HeldOut:
    """The ``split`` ("val" or "test") of ``cfg``'s dataset as the run with ``seed`` held it out; a folder decoded
    into tensors when ``decode`` (registered datasets always are), else its files for DataLoader workers."""
    target = resolve(cfg.dataset)
    if isinstance(target, DatasetSpec):
        name, spec_val = target.name, target.default_val
        data = target.load(cfg.data_dir, cfg.download, cfg.on_bad_image)
    else:
        name, spec_val, index = dataset_name(target), None, index_folder(target)
        if not decode:
            if split == "test":
                files: FolderSplit | None = index.splits[index.held_out]
            else:
                _, files, _ = _folder_splits(index, cfg, seed)
            empty = FolderSplit(split, index.splits["train"].reader, [], index.splits["train"].source)
            return HeldOut(name, str(index.root), list(index.classes), files=files or empty)
        data = folder_arrays(name, index, cfg.on_bad_image)
    location = data.location or str(target)
    if split == "test":
        return HeldOut(name, location, list(data.classes), data.test_x, data.test_y)
    _, val_x, val_y, val_idx = _array_splits(data, spec_val, cfg, seed)
    return HeldOut(name, location, list(data.classes), val_x, val_y, val_idx)


_PLACEMENT_KEYWORDS = ("device", "seed", "channels_last", "in_chans")


def load_data(dataset: str | os.PathLike[str], *, rank: int = 0, world_size: int = 1, **options: Any) -> DataBundle:
    """Keyword form of :func:`build_data` for library users: ``load_data("fashion-mnist", batch_size=64)``.

    ``options`` are :class:`DataConfig` fields and the placement keywords of ``build_data``.
    """
    placement = {key: options.pop(key) for key in _PLACEMENT_KEYWORDS if key in options}
    fields = {item.name for item in dataclasses.fields(DataConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ConfigError(f"unknown data option(s) {', '.join(unknown)}; see resnet.data.DataConfig")
    cfg = DataConfig(dataset=str(dataset), **options)
    return build_data(cfg, shard=(rank, world_size), **placement)
