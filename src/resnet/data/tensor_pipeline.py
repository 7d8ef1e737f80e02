"""The small-dataset pipeline: uint8 images held on the training device, augmented in batches there.

Batch ``k`` of epoch ``e`` depends only on ``(seed, e, k)``: the shuffle is a permutation drawn from a generator
seeded by ``(seed, e)``, the crop offsets and flips from one seeded by ``(seed, e, k)``. No global RNG is touched
and there is no per-sample Python, so the pipeline costs a small fraction of a training step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from resnet.data.augment import apply_seeded

_POLICY_TAG = 0x9011C7


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers, stable across processes and platforms."""
    digest = hashlib.sha256(",".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(*parts: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` seeded by ``derive_seed(*parts)``.

    Drawing augmentation parameters on the data's own device avoids a host-to-device copy (and with it a stream
    synchronisation) per batch on a GPU.
    """
    return torch.Generator(device=device).manual_seed(derive_seed(*parts))


def repeat_samples(order: Tensor, repeats: int) -> Tensor:
    """Repeated augmentation (Hoffer et al. 2020; Berman et al. 2019, as torchvision's ``RASampler``): ``order``
    with each of its first ``len(order) / repeats`` entries ``repeats`` times in a row (same length), so an epoch
    shows each drawn image ``repeats`` times with independent augmentations; under data parallelism the copies
    land on different ranks."""
    if repeats <= 1:
        return order
    return order.repeat_interleave(repeats)[: len(order)]


def epoch_order(size: int, seed: int, epoch: int, rank: int, world_size: int, repeats: int = 1) -> Tensor:
    """Rank ``rank``'s sample order for ``epoch``, in both pipelines: a strided slice of one permutation seeded by
    ``(seed, epoch)`` (:func:`repeat_samples` applied), ``size // world_size`` long (the remainder is dropped)."""
    perm = repeat_samples(torch.randperm(size, generator=generator(seed, epoch)), repeats)
    return perm[rank::world_size][: size // world_size]


class Normalizer:
    """``(x - mean) / std`` from uint8, with per-channel or per-pixel mean; then grayscale expansion."""

    def __init__(self, mean: Tensor, std: Tensor, in_chans: int, channels_last: bool) -> None:
        self.mean = mean.float()  # (C, 1, 1) or (C, H, W), in [0, 255] units
        self.inv_std = (1.0 / std.float()).reshape(-1, 1, 1)
        self.in_chans = in_chans
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def to(self, device: torch.device) -> Normalizer:
        self.mean, self.inv_std = self.mean.to(device), self.inv_std.to(device)
        return self

    def __call__(self, x: Tensor) -> Tensor:
        return x.float().sub_(self.mean).mul_(self.inv_std)

    def finish(self, x: Tensor) -> Tensor:
        """Expand grayscale to ``in_chans`` and apply the requested memory format."""
        if x.shape[1] != self.in_chans:
            x = x.expand(-1, self.in_chans, -1, -1)
        return x.contiguous(memory_format=self.memory_format)


def pad_crop_flip(x: Tensor, pad: int, size: tuple[int, int], gen: torch.Generator, flip: bool = True) -> Tensor:
    """Zero-pad by ``pad``, take a random ``size`` crop per image and flip half of them, in one gather.

    Returns ``(B, C, H, W)`` as a channels-last view (the gather produces ``(B, H, W, C)``).
    """
    batch, device = x.shape[0], x.device
    height, width = size
    padded = F.pad(x, (pad, pad, pad, pad)) if pad else x
    max_dy, max_dx = padded.shape[2] - height, padded.shape[3] - width
    dy = torch.randint(0, max_dy + 1, (batch,), generator=gen, device=device)
    dx = torch.randint(0, max_dx + 1, (batch,), generator=gen, device=device)
    if flip:
        flips = torch.rand(batch, generator=gen, device=device) < 0.5
    else:
        flips = torch.zeros(batch, dtype=torch.bool, device=device)
    rows = dy[:, None] + torch.arange(height, device=device)
    cols = dx[:, None] + torch.arange(width, device=device)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    index_b = torch.arange(batch, device=device)[:, None, None]
    out = padded[index_b, :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


class TensorTrainStream:
    """The training stream of a small dataset (see module docstring for the determinism contract)."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        normalizer: Normalizer,
        *,
        batch_size: int,
        seed: int,
        augment: bool,
        pad: int = 4,
        rank: int = 0,
        world_size: int = 1,
        policy: Callable[[Tensor], Tensor] | None = None,
        repeats: int = 1,
    ) -> None:
        self.images, self.labels, self.normalizer = images, labels, normalizer
        self.policy, self.repeats = policy, repeats  # see resnet.data.augment, repeat_samples
        self.batch_size, self.seed, self.augment, self.pad = batch_size, seed, augment, pad
        self.rank, self.world_size = rank, world_size
        self.image_size = (images.shape[2], images.shape[3])
        self.num_samples = len(images) // world_size  # per rank; the remainder is dropped each epoch

    def __len__(self) -> int:
        return self.num_samples // self.batch_size

    def order(self, epoch: int) -> Tensor:
        """This rank's sample order for ``epoch`` (see :func:`epoch_order`)."""
        return epoch_order(len(self.images), self.seed, epoch, self.rank, self.world_size, self.repeats)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(images, labels)`` batches on the data's device, from ``start_batch`` on."""
        order = self.order(epoch).to(self.images.device)
        for k in range(start_batch, len(self)):
            idx = order[k * self.batch_size : (k + 1) * self.batch_size]
            raw = self.images[idx]
            if self.policy is not None:  # on uint8, before normalisation, crop and flip
                raw = apply_seeded(self.policy, raw, derive_seed(self.seed, epoch, k, self.rank, _POLICY_TAG))
            x = self.normalizer(raw)
            if self.augment:
                gen = generator(self.seed, epoch, k, self.rank, device=self.images.device)
                x = pad_crop_flip(x, self.pad, self.image_size, gen)
            yield self.normalizer.finish(x), self.labels[idx]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.epoch(0)


def shard_bounds(size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous part of ``size`` evaluation images: disjoint, covering all, no padding."""
    return size * rank // world_size, size * (rank + 1) // world_size


class TensorEvalStream:
    """Deterministic evaluation batches over whole images (no augmentation), normalised.

    With ``world_size`` > 1 the stream covers this rank's shard only (see :func:`shard_bounds`); the shards'
    sums add up to the whole set's, each image counted once.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        normalizer: Normalizer,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        start, stop = shard_bounds(len(images), rank, world_size)
        self.images, self.labels = images[start:stop], labels[start:stop]
        self.rank, self.world_size = rank, world_size
        self.normalizer, self.batch_size = normalizer, batch_size
        self.num_samples = len(self.images)

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, self.num_samples, self.batch_size):
            x = self.normalizer(self.images[start : start + self.batch_size])
            yield self.normalizer.finish(x), self.labels[start : start + self.batch_size]
