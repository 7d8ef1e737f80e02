"""Throughput of the small-dataset pipeline vs the common recipe, and its cost relative to a ResNet-20 step.

    resnet benchmark --only 4    (or, in the repository: python benchmarks/data_pipeline.py [--batches 200])

Both pipelines produce the paper's augmentation (4-pixel pad + random crop + horizontal flip, normalised) on
Fashion-MNIST: ours from the on-device uint8 tensor, the common recipe as torchvision ``FashionMNIST`` + PIL
transforms + a DataLoader with one worker per core. Without the real data, synthetic IDX files of the same shape
are used. A CIFAR-shaped (3x32x32) run of our pipeline is timed too.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision import transforms as T

from resnet.benchmarks.common import Row, rate_block
from resnet.benchmarks.steps import BASELINE, build_step
from resnet.data import load_data
from resnet.data.registry import FASHION_MNIST
from resnet.data.sources.idx import FILES, locate
from resnet.data.tensor_pipeline import Normalizer, TensorTrainStream
from resnet.errors import DataError


def rate(batches: Iterator[tuple[torch.Tensor, torch.Tensor]], count: int) -> float:
    """Images per second over ``count`` of ``batches`` (after one warm-up batch)."""
    next(batches)
    start, n = time.perf_counter(), 0
    for _ in range(count):
        x, _ = next(batches)
        n += len(x)
    return n / (time.perf_counter() - start)


def common_recipe(raw_files: dict[str, Path], batch_size: int, batches: int, workers: int) -> float:
    """torchvision FashionMNIST + PIL transforms + DataLoader (the usual tutorial pipeline)."""
    root = Path(tempfile.mkdtemp())
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, path in raw_files.items():
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as src, open(raw / stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    transform = T.Compose(
        [T.RandomCrop(28, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize((0.2860,), (0.3530,))]
    )
    dataset = datasets.FashionMNIST(str(root), train=True, download=False, transform=transform)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )
    images_per_s = rate(iter(loader), batches)
    del loader  # its persistent workers end with it
    shutil.rmtree(root, ignore_errors=True)
    return images_per_s


def write_idx_files(folder: Path, train: int, test: int, size: int = 28) -> None:
    """Random images and labels in the four MNIST-style ``.gz`` IDX files (the real data's format and shape)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = (rng.integers(0, 256, (train, size, size)), rng.integers(0, 10, train),
              rng.integers(0, 256, (test, size, size)), rng.integers(0, 10, test))  # fmt: skip
    for stem, array in zip(FILES, arrays, strict=True):
        header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        blob = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
        (folder / f"{stem}.gz").write_bytes(gzip.compress(blob, mtime=0))


def measure(data_dir: str | Path | None, batch_size: int, batches: int, workers: int) -> dict[str, float]:
    """Images/s of our Fashion-MNIST and CIFAR-shaped tensor pipelines and of the common recipe (Fashion-MNIST)."""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("RESNET_CACHE", str(Path(tmp) / "cache"))
        try:  # the real files wherever the library finds them (--data-dir, $RESNET_DATA, beside the checkout...)
            folder = locate(FASHION_MNIST, "fashion-mnist", data_dir, download=False)[0].parent
            print(f"Fashion-MNIST: {folder}")
        except DataError:
            print("Fashion-MNIST: synthetic IDX files (60000 x 28x28)")
            synthetic = Path(tmp) / "data"
            write_idx_files(synthetic / "fashion-mnist", train=60000, test=100)
            data_dir, folder = synthetic, synthetic / "fashion-mnist"
            import resnet.data.registry as registry  # synthetic content: skip the content checksum

            registry.FASHION_MNIST = type(registry.FASHION_MNIST)(**{**vars(registry.FASHION_MNIST), "content_md5": {}})
        raw_files = {stem: next(p for p in (folder / f"{stem}.gz", folder / stem) if p.exists()) for stem in FILES}
        bundle = load_data("fashion-mnist", data_dir=data_dir, batch_size=batch_size, in_chans=1)
        fast = rate(bundle.train.epoch(0), min(batches, len(bundle.train) - 1))
        slow = common_recipe(raw_files, batch_size, min(batches, 100), workers)

    cifar_x = torch.randint(0, 256, (50000, 3, 32, 32), dtype=torch.uint8)
    norm = Normalizer(torch.full((3, 1, 1), 120.0), torch.full((3,), 60.0), 3, channels_last=True)
    labels = torch.randint(0, 10, (50000,))
    cifar = TensorTrainStream(cifar_x, labels, norm, batch_size=batch_size, seed=0, augment=True)
    cifar_rate = rate(cifar.epoch(0), min(batches, len(cifar) - 1))
    return {"fashion_ours": fast, "fashion_common": slow, "cifar_ours": cifar_rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="root holding fashion-mnist/ (default: the usual lookup, else synthetic)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    rates = measure(args.data_dir, args.batch_size, args.batches, args.workers)
    fast, slow, cifar_rate = rates["fashion_ours"], rates["fashion_common"], rates["cifar_ours"]
    print(f"Fashion-MNIST, pad-4 crop + flip + normalise, {args.batch_size}/batch:")
    print(f"  resnet.data tensor pipeline:           {fast:12,.0f} img/s")
    print(f"  torchvision + PIL + DataLoader ({args.workers} w):  {slow:12,.0f} img/s")
    print(f"  speed-up:                              {fast / slow:12.1f}x")
    print(f"CIFAR-shaped (3x32x32) tensor pipeline:  {cifar_rate:12,.0f} img/s")
    for label, chans, size, images_per_s in (
        ("Fashion-MNIST 1x28x28", 1, 28, fast),
        ("CIFAR 3x32x32", 3, 32, cifar_rate),
    ):
        step = build_step(BASELINE, "resnet20", size, args.batch_size, 10, in_chans=chans)
        step()  # warm-up
        step_s = args.batch_size / rate_block(step, 6, args.batch_size)()
        batch_cost = args.batch_size / images_per_s
        print(
            f"ResNet-20 step ({label}): {step_s * 1000:.1f} ms; pipeline {batch_cost * 1000:.2f} ms/batch "
            f"= {100 * batch_cost / step_s:.1f}% of a step"
        )


def rows(data_dir: str | None, quick: bool, model_rate: float | None) -> list[Row]:
    """Section 4 of the runner: pipeline rates, and the CIFAR pipeline against ResNet-20's consumption."""
    batches = 30 if quick else 200
    rates = measure(data_dir, 128, batches, os.cpu_count() or 1)
    return [
        Row("4 data", "Fashion-MNIST pad-crop-flip pipeline", rates["fashion_ours"], rates["fashion_common"], "img/s",
            note="vs torchvision FashionMNIST + PIL + DataLoader"),
        Row("4 data", "CIFAR tensor pipeline vs ResNet-20 training", rates["cifar_ours"], model_rate, "img/s",
            note="ratio = how many times faster the data comes than the model consumes it"),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
