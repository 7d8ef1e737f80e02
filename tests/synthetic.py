"""Small synthetic datasets written in the official on-disk formats.

Used by the tests (download path, parsers, bad input) and by the benchmark when the real data is absent; the
files are byte-for-byte the formats the real datasets use, only with random pixels.
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from resnet.data.sources.cifar import CIFAR10, CifarFormat
from resnet.data.sources.idx import FILES


def _pickle(obj: dict) -> bytes:
    return pickle.dumps(obj, protocol=2)


def write_cifar_archive(
    path: Path, fmt: CifarFormat = CIFAR10, per_batch: int = 20, test: int = 20, num_classes: int = 10, seed: int = 0
) -> Path:
    """A ``cifar-10-python.tar.gz``-style archive (python pickles of uint8 rows) with random images."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    members: dict[str, bytes] = {}
    for name in fmt.train_files + fmt.test_files:
        n = test if name in fmt.test_files else per_batch
        members[name] = _pickle(
            {
                "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                fmt.label_key: rng.integers(0, num_classes, n).tolist(),
                "filenames": [f"{i}.png" for i in range(n)],
            }
        )
    members[fmt.meta_file] = _pickle({fmt.names_key: [f"class{i}" for i in range(num_classes)]})
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(f"{fmt.folder}/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file holding ``array``."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_files(
    folder: Path, train: int = 60, test: int = 20, size: int = 28, compress: bool = True, seed: int = 0
) -> dict[str, Path]:
    """The four MNIST-style IDX files (``.gz`` or raw) with random images and labels 0-9."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = (
        rng.integers(0, 256, (train, size, size)),
        rng.integers(0, 10, train),
        rng.integers(0, 256, (test, size, size)),
        rng.integers(0, 10, test),
    )
    paths = {}
    for stem, array in zip(FILES, arrays, strict=True):
        blob = idx_bytes(array)
        path = folder / (f"{stem}.gz" if compress else stem)
        path.write_bytes(gzip.compress(blob, mtime=0) if compress else blob)
        paths[stem] = path
    return paths


def image_bytes(size: tuple[int, int] = (32, 32), mode: str = "RGB", fmt: str = "JPEG", seed: int = 0) -> bytes:
    """One encoded random image."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def write_image_folder(
    root: Path,
    classes: tuple[str, ...] = ("cat", "dog", "frog"),
    per_class: int = 4,
    splits: dict[str, int] | None = None,
    size: tuple[int, int] = (32, 32),
) -> Path:
    """``root/<split>/<class>/<i>.jpg``; ``splits`` maps split name to images per class (default train 4, val 2)."""
    splits = splits or {"train": per_class, "val": max(1, per_class // 2)}
    for s, (split, count) in enumerate(splits.items()):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                (folder / f"{i:04d}.jpg").write_bytes(image_bytes(size, seed=1000 * s + 100 * c + i))
    return root


def tar_tree(source: Path, archive: Path, arcname: str | None = None) -> Path:
    """Pack ``source`` into ``archive`` (``.tar`` or ``.tar.gz``) under ``arcname`` (default: its name)."""
    mode = "w:gz" if archive.name.endswith((".gz", ".tgz")) else "w"
    with tarfile.open(archive, mode) as tar:
        tar.add(source, arcname=arcname if arcname is not None else source.name)
    return archive


def trained_like(model: nn.Module, seed: int = 0, *, weights: bool = False) -> nn.Module:
    """Random BN statistics and affine parameters and classifier biases, as after training: every channel differs,
    so a wrong permutation, a misplaced or missing BN or a wrong fold changes the outputs. ``weights``: random
    He-scaled convolution and linear weights too. The module's mode is left as it was."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
            elif isinstance(module, nn.Conv2d | nn.Linear):
                if weights:
                    fan_in = module.weight[0].numel()
                    module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * (0.1 if weights else 1.0))
    return model


def trained_in_eval(model: nn.Module, seed: int = 0) -> nn.Module:
    """:func:`trained_like`, in eval mode: BN then uses the random statistics, as an exported or folded model does."""
    return trained_like(model, seed).eval()
