"""The large-dataset pipeline: image folders decoded and augmented in DataLoader workers.

Workers read image bytes (directory or tar by offset), decode them (see :mod:`resnet.data.decode`), apply the
augmentation with a per-sample generator seeded by ``(seed, epoch, batch, position)``, and normalise. The batch
sampler runs in the main process, so one persistent DataLoader serves every epoch and resumes mid-epoch.
"""

from __future__ import annotations

import os
import signal
import threading
import warnings
from collections.abc import Callable, Generator, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from resnet.data.decode import BadImageError, decode_image
from resnet.data.sources.folder import FolderSplit
from resnet.data.tensor_pipeline import derive_seed, epoch_order, shard_bounds
from resnet.errors import DataError

Transform = Callable[[Tensor, torch.Generator | None], Tensor]


class FolderDataset(Dataset):
    """Items are ``index`` or ``(index, seed)``; returns ``(image, label)`` or ``None`` for a skipped bad image."""

    def __init__(self, split: FolderSplit, transform: Transform, mean: Tensor, std: Tensor, on_bad_image: str) -> None:
        self.split, self.transform, self.on_bad_image = split, transform, on_bad_image
        self.mean, self.std = mean.reshape(-1, 1, 1) / 255, std.reshape(-1, 1, 1) / 255
        self.resize_to = largest_shorter_side(transform)  # bounds the resized size before decoding

    def __len__(self) -> int:
        return len(self.split.samples)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[Tensor, int] | BadItem | None:
        index, seed = item if isinstance(item, tuple) else (item, None)
        key, label = self.split.samples[index]
        name = self.split.reader.describe(key)
        try:
            try:
                data = self.split.reader.read(key)
            except OSError as error:
                raise BadImageError(name, f"cannot read the file ({error})") from error
            image = decode_image(data, name, resize_to=self.resize_to)
        except BadImageError as error:
            # Returned, not raised: a worker's exception would reach the user as ~50 lines of worker traceback.
            return None if self.on_bad_image == "skip" else BadItem(str(error))
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        image = (self.transform(image, gen) - self.mean) / self.std
        return image, label


def largest_shorter_side(transform: object) -> int | None:
    """The largest shorter side ``transform`` resizes an image to (scale augmentation, evaluation resize), or
    None when it never enlarges by more than the crop (random resized crop)."""
    base = getattr(transform, "base", transform)  # a policy augmentation wraps its geometric part
    sides = getattr(base, "sides", None)
    if sides is not None:
        return int(max(sides))
    resize = getattr(base, "resize", None)
    return int(resize) if isinstance(resize, int) else None


class BadItem:
    """A sample that could not be read under ``on_bad_image="error"``: its one-line message, raised in the main
    process."""

    def __init__(self, message: str) -> None:
        self.message = message


def collate(batch: list[tuple[Tensor, int] | BadItem | None]) -> tuple[Tensor, Tensor, int]:
    """Stack the readable samples and count the skipped ones; a bad item travels back instead of the count, and
    :func:`readable_batches` raises its error in the main process."""
    for item in batch:
        if isinstance(item, BadItem):
            return torch.empty(0), torch.empty(0, dtype=torch.int64), item  # type: ignore[return-value]
    good = [item for item in batch if item is not None]
    skipped = len(batch) - len(good)
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.int64), skipped
    return torch.stack([x for x, _ in good]), torch.tensor([y for _, y in good], dtype=torch.int64), skipped  # type: ignore[misc]


def leave_signals_to_main(worker_id: int) -> None:
    """Workers leave Ctrl-C and SIGTERM to the main process, which checkpoints and stops them: a scheduler
    (``scancel``, ``timeout``, systemd, ``docker stop``) signals the whole process group, and a worker that died of
    it would end the run in a worker traceback before ``last.pt`` is written. A SIGTERM from the main process
    itself (multiprocessing stopping its workers at exit) still ends the worker, as PyTorch's own handler does."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not hasattr(signal, "sigwaitinfo"):  # pragma: no cover - not Linux: PyTorch's SIGTERM handler stays
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # inherited by the thread that takes it
    threading.Thread(target=_end_on_sigterm_from, args=(os.getppid(),), name="sigterm", daemon=True).start()


def _end_on_sigterm_from(parent: int) -> None:
    """Take every SIGTERM (blocked in the worker's threads) and exit quietly only when the main process sent it."""
    while True:
        if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
            os._exit(0)


class SeededBatchSampler(Sampler):
    """Batches of ``(index, sample_seed)`` for one epoch of one rank, starting at ``start_batch``."""

    def __init__(self, size: int, batch_size: int, seed: int, rank: int, world_size: int, repeats: int = 1) -> None:
        self.size, self.batch_size, self.seed, self.repeats = size, batch_size, seed, repeats
        self.rank, self.world_size = rank, world_size
        self.per_rank = size // world_size
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return self.per_rank // self.batch_size - self.start_batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = epoch_order(self.size, self.seed, self.epoch, self.rank, self.world_size, self.repeats).tolist()
        for k in range(self.start_batch, self.per_rank // self.batch_size):
            batch = order[k * self.batch_size : (k + 1) * self.batch_size]
            yield [(i, derive_seed(self.seed, self.epoch, k, j, self.rank)) for j, i in enumerate(batch)]


def _loader(dataset: FolderDataset, device: torch.device, num_workers: int, **sampling: Any) -> DataLoader:
    """The DataLoader of a stream: workers that leave signals to the main process, seeded apart from the global
    RNG, pinned memory for a GPU, and ``sampling`` (a batch sampler, or a batch size and an index range)."""
    return DataLoader(
        dataset,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        worker_init_fn=leave_signals_to_main if num_workers > 0 else None,
        generator=torch.Generator(),
        **sampling,
    )


def readable_batches(
    loader: DataLoader, device: torch.device, channels_last: bool
) -> Generator[tuple[Tensor, Tensor], None, int]:
    """The loader's ``(images, labels)`` on ``device``, then (as the generator's return value) how many images
    were skipped under ``on_bad_image="skip"``: a batch may be short by them."""
    skipped = 0
    for x, y, bad in loader:
        if isinstance(bad, BadItem):
            raise DataError(bad.message)
        skipped += bad
        if len(y):
            x = x.to(device, non_blocking=True)
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(device, non_blocking=True)
    return skipped


class LoaderTrainStream:
    """Training stream over an image folder; the same ``epoch(e, start_batch)`` contract as the tensor one."""

    def __init__(
        self,
        dataset: FolderDataset,
        *,
        batch_size: int,
        seed: int,
        device: torch.device,
        num_workers: int,
        channels_last: bool,
        rank: int = 0,
        world_size: int = 1,
        repeats: int = 1,
    ) -> None:
        self.batch_size, self.device, self.channels_last = batch_size, device, channels_last
        self.sampler = SeededBatchSampler(len(dataset), batch_size, seed, rank, world_size, repeats)
        self.loader = _loader(
            dataset, device, num_workers, batch_sampler=self.sampler, persistent_workers=num_workers > 0
        )
        self.skipped = 0

    def __len__(self) -> int:
        return self.sampler.per_rank // self.batch_size

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(images, labels)``; a batch may be short by the images skipped under ``on_bad_image="skip"``."""
        self.sampler.set_epoch(epoch, start_batch)
        skipped = yield from readable_batches(self.loader, self.device, self.channels_last)
        self.skipped += skipped
        if skipped:
            warnings.warn(f"epoch {epoch}: skipped {skipped} unreadable image(s) (--on-bad-image skip)", stacklevel=2)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.epoch(0)


class LoaderEvalStream:
    """Deterministic evaluation over a folder split (this rank's contiguous shard of it when ``world_size`` > 1).
    With the ``ten-crop`` view ``x`` is ``(B, 10, C, H, W)``; with ``full`` the batch size is 1 (images keep
    their aspect ratio)."""

    def __init__(
        self,
        dataset: FolderDataset,
        *,
        batch_size: int,
        device: torch.device,
        num_workers: int,
        channels_last: bool,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.device, self.channels_last, self.batch_size = device, channels_last, batch_size
        start, stop = shard_bounds(len(dataset), rank, world_size)  # this rank's part; no padding
        self.rank, self.world_size = rank, world_size
        self.num_samples = stop - start
        self.loader = _loader(dataset, device, num_workers, batch_size=batch_size, sampler=range(start, stop))
        self.skipped = 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        skipped = yield from readable_batches(self.loader, self.device, self.channels_last)
        self.skipped = skipped
        if skipped:
            warnings.warn(f"evaluation: skipped {skipped} unreadable image(s) (--on-bad-image skip)", stacklevel=2)
