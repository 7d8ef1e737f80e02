"""A small in-memory stand-in for ``resnet.data.build_data`` (same stream contract), and its own checks.

Unit tests of the training loop use it so that they need no dataset files; end-to-end tests use the real data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor


class FakeTrainStream:
    """Batch k of epoch e depends only on (seed, e, k), like the real TrainStream."""

    def __init__(self, images: Tensor, labels: Tensor, batch_size: int, seed: int) -> None:
        self.images, self.labels, self.batch_size, self.seed = images, labels, batch_size, seed

    def __len__(self) -> int:
        return len(self.labels) // self.batch_size

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(self.labels), generator=generator)
        for k in range(start_batch, len(self)):
            index = order[k * self.batch_size : (k + 1) * self.batch_size]
            yield self.images[index], self.labels[index]


class FakeEvalStream:
    def __init__(self, images: Tensor, labels: Tensor, batch_size: int) -> None:
        self.images, self.labels, self.batch_size = images, labels, batch_size

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, len(self.labels), self.batch_size):
            yield self.images[start : start + self.batch_size], self.labels[start : start + self.batch_size]


@dataclass
class FakeBundle:
    train: FakeTrainStream
    val: FakeEvalStream | None
    test: FakeEvalStream
    num_classes: int = 4
    in_chans: int = 1
    image_size: tuple[int, int] = (12, 12)
    class_names: list[str] = field(default_factory=lambda: ["a", "b", "c", "d"])
    num_train: int = 0
    num_val: int = 0
    num_test: int = 0
    name: str = "fake"


def make_fake_bundle(
    num_train: int = 256, batch_size: int = 32, seed: int = 0, noise: float = 1.0, num_classes: int = 4, size: int = 12
) -> FakeBundle:
    """Classes are fixed random patterns plus noise: learnable in a few dozen steps."""
    generator = torch.Generator().manual_seed(1234)
    prototypes = torch.randn(num_classes, 1, size, size, generator=generator)

    def sample(count: int) -> tuple[Tensor, Tensor]:
        labels = torch.randint(0, num_classes, (count,), generator=generator)
        images = prototypes[labels] + noise * torch.randn(count, 1, size, size, generator=generator)
        return images, labels

    train, val, test = sample(num_train), sample(64), sample(128)
    return FakeBundle(
        train=FakeTrainStream(*train, batch_size=batch_size, seed=seed),
        val=FakeEvalStream(*val, batch_size=64),
        test=FakeEvalStream(*test, batch_size=64),
        num_classes=num_classes,
        image_size=(size, size),
        class_names=[str(i) for i in range(num_classes)],
        num_train=num_train,
        num_val=64,
        num_test=128,
    )


def test_fake_stream_is_a_function_of_epoch_and_batch() -> None:
    stream = make_fake_bundle().train
    full = list(stream.epoch(3))
    tail = list(stream.epoch(3, start_batch=5))
    assert len(full) == len(stream) == 8
    assert all(torch.equal(a[0], b[0]) for a, b in zip(full[5:], tail, strict=True))
    assert not torch.equal(next(iter(stream.epoch(4)))[1], full[0][1])
