"""Finding image files safely: a directory walk that follows each directory once, and archive formats by content.

Symbolic links are followed (datasets are often assembled from links), but each directory is entered once, by its
device and inode: a link back to an ancestor (``ln -s . train/cat/self``) or a second link to a folder already
listed is reported and not followed, so a loop can neither multiply a class nor make the walk run forever; a file
reached twice (through links) is listed once. Archives are recognised by their first bytes, not by their names.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAGIC = (  # (offset, bytes, format)
    (0, b"\x1f\x8b", "gzip"),
    (0, b"BZh", "bzip2"),
    (0, b"\xfd7zXZ\x00", "xz"),
    (0, b"\x28\xb5\x2f\xfd", "zstd"),
    (0, b"PK\x03\x04", "zip"),
    (0, b"PK\x05\x06", "zip"),
    (0, b"7z\xbc\xaf\x27\x1c", "7z"),
    (0, b"Rar!", "rar"),
    (257, b"ustar", "tar"),
)
OPENERS: dict[str, Callable[..., Any]] = {"gzip": gzip.open, "bzip2": bz2.open, "xz": lzma.open}  # -> IO[bytes]
NAMES = {"gzip": "gzip-compressed", "bzip2": "bzip2-compressed", "xz": "xz-compressed"}


def sniff_format(path: Path) -> str:
    """The container format of ``path`` from its first bytes: ``tar``, ``gzip``, ``bzip2``, ``xz``, ``zstd``,
    ``zip``, ``7z``, ``rar``, ``empty`` or ``unknown`` (an old-style tar without the ustar magic is ``unknown``)."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    if not head:
        return "empty"
    for offset, magic, kind in MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    return "unknown"


def describe_format(kind: str) -> str:
    """``gzip`` -> ``a gzip-compressed file``, for messages that say what a file is."""
    return {
        "empty": "an empty file",
        "unknown": "a file of unknown format (no tar header)",
        "tar": "a plain (uncompressed) tar archive",
    }.get(kind, f"a {NAMES.get(kind, kind)} file")


@dataclass
class Walk:
    """What :func:`walk_once` found besides the files: links not followed and files reached twice."""

    repeated_dirs: list[tuple[str, str]] = field(default_factory=list)  # (link, the folder it leads to)
    repeated_files: list[tuple[str, str]] = field(default_factory=list)  # (path, the path listed before)
    dangling: list[tuple[Path, str]] = field(default_factory=list)  # (link, its missing target): listed as files

    def warnings(self, where: str) -> list[str]:
        """One line per kind of repetition, naming the first example."""
        lines = []
        if self.repeated_dirs:
            link, target = self.repeated_dirs[0]
            lines.append(
                f"{where}: {len(self.repeated_dirs)} symbolic link(s) lead to a folder already listed or to one "
                f"that contains it (a symlink loop or a second link), not followed: e.g. {link} -> {target}; each "
                "folder is read once"
            )
        if self.repeated_files:
            path, first = self.repeated_files[0]
            lines.append(
                f"{where}: {len(self.repeated_files)} file(s) reached a second time through links, listed once: "
                f"e.g. {path} (the same file as {first})"
            )
        return lines


def walk_once(top: Path, skip: Callable[[str], bool], walk: Walk) -> Iterator[tuple[Path, list[str], list[str]]]:
    """Like ``os.walk(top, followlinks=True)`` (top-down, sorted), but each directory and file once, by inode.

    Yields ``(directory, subdirectory names, file names)``; names for which ``skip(name)`` holds are left out.
    """
    seen_dirs: dict[tuple[int, int], str] = {}
    for folder in (top, *top.resolve().parents):  # a link to an ancestor would list the tree (and more) again
        stat = os.stat(folder)
        seen_dirs.setdefault((stat.st_dev, stat.st_ino), str(folder))
    seen_files: dict[tuple[int, int], str] = {}
    stack = [top]
    while stack:
        directory = stack.pop()
        dirs: list[str] = []
        files: list[str] = []
        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if skip(entry.name):
                    continue
                try:
                    is_dir = entry.is_dir()  # follows links
                    ident = entry.stat() if is_dir or entry.is_file() else None
                except OSError:  # a dangling link or a vanished file: listed, so reading it names it
                    is_dir, ident = False, None
                if ident is None and entry.is_symlink() and not os.path.exists(entry.path):
                    walk.dangling.append((Path(entry.path), os.readlink(entry.path)))
                key = (ident.st_dev, ident.st_ino) if ident is not None else None
                if is_dir:
                    if key in seen_dirs:
                        walk.repeated_dirs.append((entry.path, seen_dirs[key]))  # type: ignore[index]
                        continue
                    seen_dirs[key] = entry.path  # type: ignore[index]
                    dirs.append(entry.name)
                else:
                    if key is not None:
                        if key in seen_files:
                            walk.repeated_files.append((entry.path, seen_files[key]))
                            continue
                        seen_files[key] = entry.path
                    files.append(entry.name)
        yield directory, dirs, files
        stack.extend(directory / name for name in reversed(dirs))
