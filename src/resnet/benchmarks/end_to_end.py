"""Section 1: ResNet-20 end-to-end training images/s on cifar10-jpeg, `resnet train` vs the common recipe.

Ours is the real trainer (the `resnet train` path with every default: the `fast` recipe, batch 128, the
in-memory uint8 pipeline, channels-last, `--amp auto`, the fused optimizer), timed per iteration by a callback.
The common recipe is what tutorials write: torchvision ``ImageFolder`` over the extracted JPEG tree + PIL
transforms (pad-4 crop, flip, ToTensor, Normalize) + a ``DataLoader`` with one worker per core, the same
ResNet-20 in eager fp32 NCHW and ``torch.optim.SGD``. Both start from the same files; one-time costs (decoding
into the tensor cache, extracting the tar for ImageFolder, worker start-up) are reported apart from the rates.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from statistics import median
from typing import Any, cast

import torch
from torch import nn

from resnet.benchmarks.common import Row
from resnet.runtime.measured import interleaved

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # CIFAR-10's, as the tutorials normalise


def find_cifar10_jpeg(data_dir: str | None) -> Path:
    from resnet.data.paths import data_roots
    from resnet.errors import DataError

    for root in data_roots(data_dir):
        if (root / "cifar10-jpeg" / "train.tar.gz").is_file():
            return root / "cifar10-jpeg"
    raise DataError("cifar10-jpeg not found; pass --data-dir to the folder holding cifar10-jpeg/train.tar.gz")


def extracted_split(folder: Path, split: str = "train") -> tuple[Path, float]:
    """``<split>/<class>/*.jpg`` for ImageFolder, extracted once into the cache; (path, seconds spent now)."""
    from resnet.data.paths import cache_dir

    target = cache_dir() / "benchmarks" / "cifar10-jpeg"
    done = target / (".complete" if split == "train" else f".complete-{split}")
    start = time.perf_counter()
    if not done.exists():
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(folder / f"{split}.tar.gz") as tar:
            tar.extractall(target, filter="data")
        done.touch()
    return target / split, time.perf_counter() - start


def common_loader(folder: Path, batch_size: int, workers: int, *, train: bool = True, drop_last: bool = False) -> Any:
    """The tutorials' CIFAR pipeline: torchvision ``ImageFolder`` + PIL transforms (pad-4 crop and flip when
    training, ToTensor, Normalize) + a ``DataLoader`` whose workers persist across epochs."""
    from torch.utils.data import DataLoader
    from torchvision import datasets
    from torchvision import transforms as T

    augment = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []
    dataset = datasets.ImageFolder(str(folder), transform=T.Compose([*augment, T.ToTensor(), T.Normalize(MEAN, STD)]))
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=train, num_workers=workers, drop_last=drop_last,
        persistent_workers=workers > 0,
    )  # fmt: skip


class _Clock:
    """Trainer callback: the time at the end of every iteration."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def on_iteration_end(self, trainer: Any, iteration: int) -> None:
        self.marks.append(time.perf_counter())


class Ours:
    """Blocks of `resnet train` iterations; the data bundle is built once, as the trainer builds it."""

    def __init__(self, data_dir: Path, steps: int, warmup: int, tmp: Path) -> None:
        from resnet.data.bundle import DataBundle
        from resnet.data.tensor_pipeline import TensorEvalStream
        from resnet.runtime import resolve_runtime
        from resnet.train import load_config
        from resnet.train.trainer import Trainer

        self.steps, self.warmup, self.tmp, self.blocks = steps, warmup, tmp, 0
        overrides = {
            "model.name": "resnet20",
            "data.dataset": "cifar10-jpeg",
            "data.data_dir": str(data_dir),
            "train.iterations": warmup + steps,
            "eval.every_iterations": 10**9,
            "eval.test": "end",
            "checkpoint.every_minutes": 0,
            "log.progress": "none",
            "log.tensorboard": False,
        }
        self.config = load_config("fast", overrides)  # the CLI's default recipe
        start = time.perf_counter()
        probe = Trainer(self.config)
        probe.runtime = resolve_runtime(self.config.system)
        bundle = probe._build_data()  # exactly the trainer's data (decoded once into the tensor cache)
        self.setup_s = time.perf_counter() - start
        test = bundle.test
        tiny = TensorEvalStream(test.images[:256], test.labels[:256], test.normalizer, test.batch_size)
        # The timed part is the training loop.
        self.bundle = dataclasses.replace(cast(DataBundle, bundle), val=None, test=tiny)
        self.device = probe.runtime.describe()
        self.batch_size = self.config.data.batch_size

    def block(self) -> float:
        from resnet.train.trainer import train

        clock = _Clock()
        config = dataclasses.replace(self.config, run_dir=str(self.tmp / f"ours-{self.blocks}"))
        self.blocks += 1
        train(config, data=self.bundle, callbacks=[clock])
        seconds = clock.marks[-1] - clock.marks[self.warmup - 1] if self.warmup else clock.marks[-1] - clock.marks[0]
        counted = self.steps if self.warmup else self.steps - 1
        return counted * self.batch_size / seconds


class CommonRecipe:
    """The tutorial loop: ``create_model`` in eager fp32 NCHW on ``device``, ``torch.optim.SGD`` (lr 0.1, momentum
    0.9), cross-entropy, over :func:`common_loader` with one worker per core (persistent, so that only the first
    pass pays the start-up)."""

    def __init__(
        self,
        train_dir: Path,
        batch_size: int = 128,
        workers: int | None = None,
        *,
        model: str = "resnet20",
        weight_decay: float = 1e-4,
        device: torch.device | str = "cpu",
        drop_last: bool = False,
    ) -> None:
        from resnet.models import create_model

        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self.loader = common_loader(train_dir, batch_size, self.workers, drop_last=drop_last)
        self.device, self.batch_size = device, batch_size
        self.model = create_model(model, num_classes=len(self.loader.dataset.classes)).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9, weight_decay=weight_decay)
        self.criterion = nn.CrossEntropyLoss()
        self.batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None  # where the last block stopped

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        images, labels = images.to(self.device), labels.to(self.device)
        loss = self.criterion(self.model(images), labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def block(self, steps: int, warmup: int) -> float:
        """Images/s over ``steps`` iterations after ``warmup`` (which drain the batches prefetched meanwhile),
        going on where the last block stopped, epoch after epoch."""
        self.model.train()
        start = time.perf_counter()
        for i in range(warmup + steps):
            if i == warmup:
                start = time.perf_counter()
            batch = next(self.batches, None) if self.batches is not None else None
            if batch is None:
                self.batches = iter(self.loader)
                batch = next(self.batches)
            self.step(*batch)
        return steps * self.batch_size / (time.perf_counter() - start)


def run(data_dir: str | None, quick: bool) -> list[Row]:
    from resnet.runtime import cpu_bf16_choice

    folder = find_cifar10_jpeg(data_dir)
    steps, repeats = (4, 2) if quick else (12, 5)
    train_dir, extract_s = extracted_split(folder)
    with tempfile.TemporaryDirectory() as tmp:
        ours = Ours(folder.parent, steps, warmup=1, tmp=Path(tmp))
        # Up to workers * prefetch_factor batches wait in the queue after the other side's block: drain them.
        common = CommonRecipe(train_dir, drop_last=True)
        common_block = functools.partial(common.block, steps, warmup=2 * common.workers + 1)
        start = time.perf_counter()
        common_block()  # worker start-up and first batches, not counted
        startup_s = time.perf_counter() - start
        print(
            f"[1] one-time costs: our data setup {ours.setup_s:.1f} s (tensor cache), tar extraction for "
            f"ImageFolder {extract_s:.1f} s, common-recipe first block {startup_s:.1f} s; ours runs on {ours.device}"
        )
        results = interleaved({"ours": ours.block, "common": common_block}, repeats, "[1] img/s")
        del common, common_block
    for name, rates in results.items():
        print(f"[1] {name}: " + ", ".join(f"{r:.0f}" for r in rates) + " img/s per block")
    return [
        Row(
            "1 end-to-end",
            "ResNet-20 training, cifar10-jpeg, batch 128",
            median(results["ours"]),
            median(results["common"]),
            "img/s",
            goal=2.2 if cpu_bf16_choice()[0] else 1.5,  # the goals on a bf16 / an fp32-only CPU
            note=f"median of {repeats} interleaved blocks of {steps} steps",
        )
    ]
