"""Image folders in the ImageNet layout, read from a directory or from ``.tar`` / ``.tar.gz`` archives.

The tree is indexed once (file names and, for archives, byte offsets); images are read by key through a small
picklable reader, so DataLoader workers can read them in parallel. A ``.tar.gz`` is not seekable, so for random
access its image members are decompressed once into the cache directory (never next to the source, which may be
read-only), at their offsets in the archive, with holes for everything else. Sizes come from the tar headers: a
member above the image-file limit (:func:`resnet.data.decode.max_file_bytes`) is a bad image, never read nor
copied into the cache.

A small folder (e.g. the CIFAR-10 JPEG copy) is decoded once into uint8 tensors (:func:`folder_arrays`), in one
sequential pass per split (a ``.tar.gz`` is streamed, not extracted); the result goes to the tensor cache, so later
runs skip decoding entirely.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch
from torch import Tensor

from resnet.data.config import check_choice
from resnet.data.decode import (
    DECODER_VERSION,
    BadImageError,
    check_file_size,
    decode_image,
    max_file_bytes,
    read_image_file,
)
from resnet.data.paths import cache_dir, name_problem
from resnet.data.sources.base import ArrayDataset, cached_arrays
from resnet.data.sources.files import OPENERS, Walk, describe_format, sniff_format, walk_once
from resnet.errors import DataError, DataNotFoundError
from resnet.files import disk_full, write_atomic

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".jfif"}
)
SPLITS = ("train", "val", "test")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
LAYOUT = (
    "expected an image folder laid out as ROOT/train/<class>/<image> plus ROOT/val/<class>/<image> and/or "
    "ROOT/test/<class>/<image>; each split may also be an archive ROOT/<split>.tar[.gz], or ROOT itself a "
    ".tar/.tar.gz of that tree"
)


TAR_FORMATS = ("tar", "gzip", "bzip2", "xz")  # what tarfile reads (compressed ones decompressed once to seek)


def archive_format(path: Path) -> str:
    """The format of a tar archive from its content (a name may lie: a plain tar called ``.tar.gz``, a gzip called
    ``.tar``): ``tar``, ``gzip``, ``bzip2`` or ``xz``; anything else is an error that says what the file is."""
    kind = sniff_format(path)
    if kind == "unknown" and tarfile.is_tarfile(path):
        return "tar"  # an old-style tar without the ustar magic
    if kind not in TAR_FORMATS:
        raise DataError(
            f"{path} is {describe_format(kind)}, not a .tar/.tar.gz/.tar.bz2/.tar.xz archive; pack the image "
            f"folder with tar (e.g. tar czf {path.name.split('.')[0]}.tar.gz train test), or unpack it and pass "
            "the folder"
        )
    return kind


class DirReader:
    """Reads images from a directory tree by relative path."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, key: str) -> bytes:
        """The file's bytes; a file that cannot be read (a dangling link; a FIFO or a device named ``x.png``, or a
        file above the size limit, refused before a byte is read) is a bad image, skipped by ``--on-bad-image
        skip`` like a corrupt one."""
        try:
            return read_image_file(self.root / key)
        except OSError as error:
            raise BadImageError(self.describe(key), f"cannot read the file ({error.strerror or error})") from error

    def describe(self, key: str) -> str:
        return str(self.root / key)

    def iter_bytes(self, keys: list[str]) -> Iterator[tuple[str, bytes | BadImageError]]:
        """Each file's bytes, or the bad image it is (unreadable: a dangling link, a FIFO), so that
        ``--on-bad-image skip`` skips it like any corrupt image and the others are read."""
        for key in keys:
            try:
                yield key, self.read(key)
            except BadImageError as error:
                yield key, error


class TarReader:
    """Reads images from a tar archive by member name: sequentially, or by offset (after decompressing a .gz)."""

    def __init__(self, path: Path, offsets: dict[str, tuple[int, int]]) -> None:
        self.path = path
        self.offsets = offsets
        self.format = archive_format(path)  # by content: the name may lie
        self._seekable: Path | None = path if self.format == "tar" else None
        self._handle: BinaryIO | None = None
        self._pid = -1

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handle"], state["_pid"] = None, -1  # each worker opens its own handle
        return state

    def describe(self, key: str) -> str:
        return f"{self.path}:{key}"

    def __del__(self) -> None:
        if self._handle is not None:  # closed here, not by the garbage collector's ResourceWarning
            self._handle.close()

    def _uncompressed(self) -> Path:
        if self._seekable is None:
            stat, limit = self.path.stat(), max_file_bytes()
            identity = f"{self.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{limit}"
            tag = hashlib.sha256(identity.encode()).hexdigest()
            target = cache_dir() / "untarred" / f"{self.path.name.split('.')[0]}-{tag[:16]}.members"
            if not target.is_file():
                ranges = sorted({(offset, size) for offset, size in self.offsets.values() if size <= limit})
                try:
                    with OPENERS[self.format](self.path, "rb") as src:
                        write_atomic(target, lambda dst: copy_ranges(src, dst, ranges))
                except EOFError as error:
                    raise DataError(f"cannot read archive {self.path}: {error}; it is truncated, replace it") from error
                except OSError as error:  # a read-only or full cache: no temporary file is left (write_atomic)
                    reason = "the disk is full" if disk_full(error) else (error.strerror or str(error))
                    raise DataError(
                        f"cannot unpack {self.path} into the archive cache {target.parent} ({reason}); free some "
                        "space, set RESNET_CACHE to a writable directory, or unpack the archive and pass the folder"
                    ) from error
            self._seekable = target
        return self._seekable

    def read(self, key: str) -> bytes:
        offset, size = self.offsets[key]
        check_file_size(size, self.describe(key))  # from the tar header: a 4 GB member is never read
        if self._handle is None or self._pid != os.getpid():
            self._handle = open(self._uncompressed(), "rb")  # noqa: SIM115 - kept open for the reader's life
            self._pid = os.getpid()
        self._handle.seek(offset)
        return self._handle.read(size)

    def iter_bytes(self, keys: list[str]) -> Iterator[tuple[str, bytes | BadImageError]]:
        """One sequential pass over the archive (fast for .tar.gz), yielding in archive order; a member above the
        size limit (from its header) is yielded as the bad image it is, unread."""
        wanted = set(keys)
        with tarfile.open(self.path) as tar:
            for info in tar:
                if info.name in wanted:
                    try:
                        check_file_size(info.size, self.describe(info.name))
                    except BadImageError as error:
                        yield info.name, error
                        continue
                    yield info.name, tar.extractfile(info).read()  # type: ignore[union-attr]


CHUNK = 1 << 22


def copy_ranges(src: BinaryIO, dst: BinaryIO, ranges: list[tuple[int, int]]) -> None:
    """Copy the ``(offset, size)`` byte ranges of ``src`` to the same offsets of ``dst`` in chunks, seeking past
    everything else (a hole in ``dst``, no disk space): memory and cache hold the images, never a huge member."""
    end = 0
    for offset, size in ranges:
        position = max(offset, end)  # ranges may overlap (a hard link is its target's range)
        src.seek(position)
        dst.seek(position)
        while position < offset + size:
            chunk = src.read(min(CHUNK, offset + size - position))
            if not chunk:
                raise EOFError(f"the archive ends inside a member, at byte {position:,}")
            dst.write(chunk)
            position += len(chunk)
        end = max(end, offset + size)
    dst.truncate(end)


Reader = DirReader | TarReader


@dataclass
class FolderSplit:
    """One split: its reader and its ``(key, label)`` samples, sorted by class then file name."""

    name: str
    reader: Reader
    samples: list[tuple[str, int]]
    source: str


@dataclass
class ImageFolderIndex:
    """All splits of an image folder, with the class list taken from ``train``."""

    root: Path
    classes: list[str]
    splits: dict[str, FolderSplit]
    ignored: list[str] = field(default_factory=list)  # non-image files seen (reported, never silently dropped)

    @property
    def held_out(self) -> str:
        """The split used as the test set: ``test`` when present, else ``val`` (the ImageNet convention)."""
        return "test" if "test" in self.splits else "val"

    def content_key(self) -> str:
        """A cheap identity of the source (archive or file names, sizes and mtimes) for cache keys."""
        digest = hashlib.sha256()
        for split in self.splits.values():
            digest.update(split.source.encode())
            if isinstance(split.reader, TarReader):
                stat = split.reader.path.stat()
                digest.update(f"{stat.st_size}|{stat.st_mtime_ns}".encode())
            else:
                for key, _ in split.samples:
                    stat = (split.reader.root / key).stat()
                    digest.update(f"{key}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        return digest.hexdigest()


def _skip(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def _group(entries: list[tuple[str, list[str]]], where: str, ignored: list[str]) -> dict[str, list[str]]:
    """Group ``(key, parts-below-split)`` entries by class folder; misplaced images are an error."""
    by_class: dict[str, list[str]] = {}
    for key, rel in entries:
        if any(_skip(p) for p in rel):
            continue
        if Path(rel[-1]).suffix.lower() not in IMAGE_EXTENSIONS:
            ignored.append(key)
            continue
        if len(rel) < 2:
            raise DataError(f"{where}: image {key} is not inside a class folder; {LAYOUT}")
        if rel[0] not in by_class and name_problem(rel[0]):  # a class name goes into meta, JSON and output lines
            raise DataError(f"{where}: the class folder {rel[0]!r} {name_problem(rel[0])}")
        by_class.setdefault(rel[0], []).append(key)
    return by_class


def _check_no_empty_class(where: str, folders: set[str], by_class: dict[str, list[str]]) -> None:
    """A class folder without images (empty, or only ``.DS_Store``/text files) is an error, never dropped."""
    empty = sorted(folders - set(by_class))
    if empty:
        raise DataError(
            f"{where}: class folder(s) {', '.join(empty[:5])} hold no images; "
            "remove them or add images (a class is never dropped silently)"
        )


def _scan_dir(split_dir: Path, root: Path, ignored: list[str]) -> dict[str, list[str]]:
    """Index a split directory, following links but each folder and file once (see :func:`walk_once`)."""
    entries = []
    folders: set[str] = set()
    walk = Walk()
    for dirpath, dirnames, filenames in walk_once(split_dir, _skip, walk):
        rel_dir = dirpath.relative_to(split_dir).parts
        if len(rel_dir) == 0:
            folders.update(dirnames)
        for name in filenames:
            entries.append((str(Path(dirpath, name).relative_to(root)), [*rel_dir, name]))
    for link, target in walk.dangling:
        if link.parent == split_dir:  # a class folder (or a file beside them) that is gone: never a class dropped
            raise DataError(
                f"{link} is a symbolic link to {target}, which does not exist; fix or remove the link (a class is "
                "never dropped silently)"
            )
    for line in walk.warnings(str(split_dir)):
        warnings.warn(line, stacklevel=3)
    by_class = _group(entries, str(split_dir), ignored)
    _check_no_empty_class(str(split_dir), folders, by_class)
    return by_class


def _scan_tar(path: Path, split: str | None, ignored: list[str]) -> tuple[dict, dict[str, tuple[int, int]]]:
    """Index an archive: per split, class -> member names; plus member offsets."""
    found: dict[str, list[tuple[str, list[str]]]] = {}
    folders: dict[str, set[str]] = {}  # per split, every class folder seen (as a directory or a path component)
    offsets: dict[str, tuple[int, int]] = {}
    archive_format(path)  # says what the file is when it is no tar at all (a zip, an image, ...)
    try:
        with tarfile.open(path) as tar:
            for info in tar:
                # A hard link (tar stores the second of two linked files so) is its target's bytes, read there.
                is_file = info.isfile() or (info.islnk() and info.linkname in offsets)
                if not (is_file or info.isdir()):
                    continue
                parts = [p for p in info.name.split("/") if p not in ("", ".")]
                if not parts:
                    continue
                if split is not None:  # a per-split archive: [split/]<class>/<image>
                    rel = parts[1:] if parts[0] == split and (len(parts) > 2 or info.isdir()) else parts
                    where = split
                else:
                    idx = next((i for i, p in enumerate(parts[:-1] if is_file else parts) if p in SPLITS), None)
                    if idx is None:
                        image = Path(parts[-1]).suffix.lower() in IMAGE_EXTENSIONS
                        if is_file and image and not any(_skip(p) for p in parts):
                            raise DataError(f"{path}: image {info.name} is not under a train/val/test folder; {LAYOUT}")
                        continue
                    where, rel = parts[idx], parts[idx + 1 :]
                if rel and not _skip(rel[0]) and (info.isdir() or len(rel) > 1):
                    folders.setdefault(where, set()).add(rel[0])
                if is_file:
                    offsets[info.name] = offsets[info.linkname] if info.islnk() else (info.offset_data, info.size)
                    found.setdefault(where, []).append((info.name, rel))
    except (OSError, tarfile.TarError, EOFError) as error:
        kind = sniff_format(path)
        if isinstance(error, tarfile.ReadError) and not offsets and kind in OPENERS:
            raise DataError(
                f"{path} is {describe_format(kind)} that holds no tar archive; pack the image folder with tar "
                "(e.g. tar czf NAME.tar.gz train test), or unpack it and pass the folder"
            ) from error
        raise DataError(f"cannot read archive {path}: {error}; it is corrupt or truncated, replace it") from error
    grouped = {s: _group(entries, f"{path}", ignored) for s, entries in found.items()}
    for split_name, names in folders.items():
        _check_no_empty_class(f"{path} ({split_name})", names, grouped.get(split_name, {}))
    return grouped, offsets


def _split_archive(root: Path, split: str) -> Path | None:
    for suffix in ARCHIVE_SUFFIXES:
        if (root / f"{split}{suffix}").is_file():
            return root / f"{split}{suffix}"
    return None


def index_folder(path: Path) -> ImageFolderIndex:
    """Index an image folder (directory, per-split archives, or one archive); one clear error on a bad layout."""
    if not path.exists():
        raise DataNotFoundError(f"{path} does not exist; {LAYOUT}")
    ignored: list[str] = []
    raw: dict[str, tuple[dict[str, list[str]], Reader, str]] = {}
    if path.is_file():
        grouped, offsets = _scan_tar(path, None, ignored)
        whole: Reader = TarReader(path, offsets)
        raw = {s: (classes, whole, str(path)) for s, classes in grouped.items()}
    else:
        for split in SPLITS:
            if (path / split).is_dir():
                raw[split] = (_scan_dir(path / split, path, ignored), DirReader(path), str(path / split))
            elif (archive := _split_archive(path, split)) is not None:
                grouped, offsets = _scan_tar(archive, split, ignored)
                raw[split] = (grouped.get(split, {}), TarReader(archive, offsets), str(archive))
    if "train" not in raw or not raw["train"][0]:
        raise DataNotFoundError(f"{path}: no training images found; {LAYOUT}")
    if len(raw) < 2:
        raise DataError(f"{path}: only a train split found, a val/ or test/ split is needed too; {LAYOUT}")
    classes = sorted(raw["train"][0])
    label = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split, (by_class, reader, source) in raw.items():
        unknown = sorted(set(by_class) - set(label))
        if unknown:
            raise DataError(
                f"{source}: class folder(s) {', '.join(unknown[:5])} are not in the train split; "
                "every evaluation class must also be a training class"
            )
        if not by_class:
            raise DataError(f"{source}: no images found; {LAYOUT}")
        samples = [(key, label[c]) for c in sorted(by_class) for key in sorted(by_class[c])]
        splits[split] = FolderSplit(split, reader, samples, source)
    if ignored:
        warnings.warn(f"{path}: ignored {len(ignored)} non-image file(s), e.g. {ignored[0]}", stacklevel=2)
    return ImageFolderIndex(path, classes, splits, ignored)


def decoded_images(
    split: FolderSplit, keys: list[str], on_bad_image: str, bad: list[str]
) -> Iterator[tuple[str, Tensor]]:
    """``(key, image)`` of each readable image of ``keys``, in one sequential pass (a ``.tar.gz`` is streamed); a
    bad image stops with its name, or with ``on_bad_image="skip"`` its key is added to ``bad``."""
    try:
        for key, data in split.reader.iter_bytes(keys):
            try:
                if isinstance(data, BadImageError):  # a file its reader could not read (a dangling link, a FIFO)
                    raise data
                image = decode_image(data, split.reader.describe(key))
            except BadImageError:
                if on_bad_image == "error":
                    raise
                bad.append(key)
                continue
            yield key, image
    except OSError as error:
        raise DataError(f"cannot read {split.source}: {error}; the file is corrupt or truncated") from error


def _decode_split(split: FolderSplit, on_bad_image: str, bad: list[str]) -> tuple[Tensor, Tensor]:
    labels = dict(split.samples)
    images = dict(decoded_images(split, [k for k, _ in split.samples], on_bad_image, bad))
    skipped = set(bad)
    missing = [k for k, _ in split.samples if k not in images and k not in skipped]
    if missing:
        raise DataError(f"{split.source}: {len(missing)} image(s) could not be read, e.g. {missing[0]}")
    keys = [k for k, _ in split.samples if k in images]
    if not keys:
        raise DataError(f"{split.source}: no readable images")
    shapes = {tuple(images[k].shape) for k in keys}
    if len(shapes) > 1:
        examples = sorted(shapes)[:3]
        raise DataError(
            f"{split.source}: images differ in size ({', '.join('x'.join(map(str, s[1:])) for s in examples)}); "
            "only same-size images can be decoded into one tensor; use the DataLoader pipeline "
            "(--set data.pipeline=loader)"
        )
    x = torch.stack([images.pop(k) for k in keys])
    y = torch.tensor([labels[k] for k in keys], dtype=torch.int64)
    return x, y


def folder_arrays(name: str, index: ImageFolderIndex, on_bad_image: str = "error") -> ArrayDataset:
    """Decode all splits of a small image folder into an :class:`ArrayDataset` (through the tensor cache)."""
    check_choice("on_bad_image", on_bad_image)

    def build() -> ArrayDataset:
        bad: list[str] = []
        train_x, train_y = _decode_split(index.splits["train"], on_bad_image, bad)
        test_x, test_y = _decode_split(index.splits[index.held_out], on_bad_image, bad)
        val_x = val_y = None
        if index.held_out == "test" and "val" in index.splits:
            val_x, val_y = _decode_split(index.splits["val"], on_bad_image, bad)
        data = ArrayDataset(
            train_x,
            train_y,
            test_x,
            test_y,
            list(index.classes),
            str(index.root),
            skipped=len(bad),
            test_split=index.held_out,
            val_x=val_x,
            val_y=val_y,
        )
        return data

    data = cached_arrays(name, [index.content_key(), on_bad_image, DECODER_VERSION], build)
    if data.skipped:
        warnings.warn(f"{index.root}: skipped {data.skipped} unreadable image(s) (--on-bad-image skip)", stacklevel=2)
    data.location = str(index.root.resolve())
    return data
