"""The bad-input corpus: small generated files that once lost data, ran code, hung or printed a traceback.

Each builder writes one bad input into a temporary folder; the tests in ``test_bad_inputs_*.py`` run the
library or the CLI on it and assert the exit code, the one-line message, and that no earlier file changed.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import socket
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet.cli import main
from resnet.data.sources.cifar import CIFAR10, CifarFormat
from synthetic import write_image_folder

# Tiny runs: resnet8 on 8x8 images, tensor pipeline, no TensorBoard.
TRAIN = [
    "train",
    "--model",
    "resnet8",
    "--batch-size",
    "8",
    "--progress",
    "none",
    "--set",
    "log.tensorboard=false",
    "--set",
    "data.pipeline=tensor",
    "--set",
    "eval.test=end",
]


def good_images(run: Path) -> list[Path]:
    """Two test images of the folder ``run`` was trained on (``run.parent / "folder"``), one of class a, one of b."""
    folder = run.parent / "folder" / "test"
    return [folder / "a" / "0000.jpg", folder / "b" / "0001.jpg"]


def snapshot(root: Path) -> dict[str, str]:
    """Every file below ``root`` with the SHA-256 of its bytes: compared before and after a refused command."""
    if not root.exists():
        return {}
    if root.is_file():
        return {root.name: hashlib.sha256(root.read_bytes()).hexdigest()}
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``resnet ARGV`` in-process; return (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as stop:  # argparse errors
        code = int(stop.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    """The single error line of a refused command: warnings and argparse's usage block may precede it, nothing
    may follow it, and there is never a traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning: ")]
    assert lines, "no error message"
    usage = [line for line in lines[:-1] if line.startswith("usage:") or line.startswith(" ")]
    assert len(usage) == len(lines) - 1, err
    return lines[-1]


def image_folder(root: Path, size: int = 8, train: int = 8, test: int = 2) -> Path:
    """A 3-class folder of ``size``x``size`` JPEGs: train/ (``train`` per class) and test/ (``test`` per class)."""
    return write_image_folder(root, ("a", "b", "c"), splits={"train": train, "test": test}, size=(size, size))


def corrupt_jpeg(path: Path) -> Path:
    """Truncate a JPEG to a third: PIL cannot decode it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def png16(path: Path, values: np.ndarray) -> Path:
    """A 16-bit PNG written byte by byte: grayscale for (H, W) ``values``, RGB for (H, W, 3)."""
    height, width = values.shape[:2]
    color = 0 if values.ndim == 2 else 2
    rows = values.astype(">u2").reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, color, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def cifar_batch(n: int = 10, labels: list[int] | None = None, fmt: CifarFormat = CIFAR10, seed: int = 0) -> bytes:
    """One batch file in the official format (protocol-2 pickle of a dict with a uint8 array)."""
    rng = np.random.default_rng(seed)
    entry = {
        "batch_label": "training batch",
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        fmt.label_key: labels if labels is not None else rng.integers(0, fmt.num_classes, n).tolist(),
        "filenames": [f"{i}.png" for i in range(n)],
    }
    return pickle.dumps(entry, protocol=2)


def cifar_folder(root: Path, fmt: CifarFormat = CIFAR10, per_batch: int = 10) -> Path:
    """``root/cifar10/cifar-10-batches-py/`` with small random batches and the meta file; returns the folder."""
    folder = root / "cifar10" / fmt.folder
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate((*fmt.train_files, *fmt.test_files)):
        (folder / name).write_bytes(cifar_batch(per_batch, fmt=fmt, seed=i))
    names = {fmt.names_key: [f"class{i}" for i in range(fmt.num_classes)]}
    (folder / fmt.meta_file).write_bytes(pickle.dumps(names, protocol=2))
    return folder


class CodeExecution:
    """Unpickling this runs ``os.system``: a crafted batch file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted_pickle(marker: Path) -> bytes:
    return pickle.dumps({"data": CodeExecution(marker), "labels": [0]}, protocol=2)


@contextmanager
def silent_server() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers (a stalled proxy); yields its URL."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])  # keep it open, send nothing
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/"
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        server.close()


def gray16_image_bytes(values: np.ndarray) -> bytes:
    """A 16-bit grayscale PNG as PIL writes it (mode ``I;16``)."""
    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.uint16)).save(buffer, "PNG")
    return buffer.getvalue()


# --- issue 19: extreme sizes, links, misnamed archives, damaged sidecars --------------------------------------------


def png8(path: Path, width: int, height: int, *, pixel_data: bool = True) -> Path:
    """An 8-bit RGB PNG written byte by byte (a 20000x1 one is 144 bytes). ``pixel_data=False`` writes only a
    header that claims the size (a decompression bomb's header, refused before anything is decoded)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = b"\x00" + bytes([90, 160, 30]) * width
    compressor = zlib.compressobj()
    body = compressor.compress(row * height) + compressor.flush() if pixel_data else zlib.compress(row[:64])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def symlink_loops(folder: Path, kind: str) -> Path:
    """Links that once multiplied a class or never ended: ``self`` (``ln -s . train/a/self``), ``branching``
    (three links to the parent in one class: 3^depth paths), ``ancestor`` (a link to the dataset root), ``file``
    (an image linked into another class). Returns the link (the first one)."""
    cls = folder / "train" / "a"
    if kind == "self":
        link = cls / "self"
        link.symlink_to(".")
    elif kind == "branching":
        for name in ("x", "y", "z"):
            (folder / "train" / "b" / name).symlink_to("..")
        link = folder / "train" / "b" / "x"
    elif kind == "ancestor":
        link = cls / "root"
        link.symlink_to(os.path.relpath(folder, cls))
    else:
        link = folder / "train" / "b" / "twin.jpg"
        link.symlink_to(os.path.relpath(cls / "0000.jpg", link.parent))
    return link


def misnamed_archive(folder: Path, target: Path, kind: str) -> Path:
    """``folder`` packed as ``kind`` (``tar``, ``gz``, ``bz2``, ``xz``) into ``target``, whatever its name says;
    ``zip`` packs a zip, ``gz-no-tar`` gzips a text."""
    import shutil
    import tarfile

    if kind == "zip":
        made = shutil.make_archive(str(target.with_name(target.name + "-zip")), "zip", folder)
        os.replace(made, target)
    elif kind == "gz-no-tar":
        import gzip

        target.write_bytes(gzip.compress(b"not a tar archive\n" * 100))
    else:
        with tarfile.open(target, "w" if kind == "tar" else f"w:{kind}") as tar:
            tar.add(folder, arcname=folder.name)
    return target


def damage_sidecar(weights: Path, damage: str) -> None:
    """Damage an exported safetensors file or its ``NAME.json`` sidecar in one way."""
    import json

    sidecar = weights.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    pre = meta["preprocessing"]
    if damage == "std-zero":
        pre["std"] = [0.0, 0.0, 0.0]
    elif damage == "std-one-zero":
        pre["std"] = [0.25, 0.0, 0.25]
    elif damage == "std-negative":
        pre["std"] = [-0.25] * 3
    elif damage == "mean-two-values":
        pre["mean"] = [0.5, 0.5]
    elif damage == "invalid-json":
        sidecar.write_text(sidecar.read_text()[:-20])
        return
    elif damage == "not-utf8":
        sidecar.write_bytes(b"\xff\xfe{\x00")
        return
    elif damage == "list":
        meta = [meta]
    elif damage == "no-model":
        meta.pop("model")
    elif damage == "fewer-classes":
        meta["class_names"] = meta["class_names"][:2]
    elif damage == "more-classes":
        meta["class_names"] = [*meta["class_names"], "extra1", "extra2"]
    elif damage == "garbage-header":
        weights.write_bytes(b"\xff" * 8 + b"not a safetensors header" * 4)
        return
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:200])
        return
    else:
        raise ValueError(damage)
    sidecar.write_text(json.dumps(meta))
