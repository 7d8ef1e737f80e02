"""Downloading and verifying published files.

torchvision's ``download_url`` does the transfer; this module adds what it lacks for us: a ``.part`` file that is
only renamed once its MD5 matches the published checksum (and removed when it does not), and errors that say
what to do.
"""

from __future__ import annotations

import gzip
import hashlib
import urllib.error
from pathlib import Path

from torchvision.datasets.utils import calculate_md5, download_url, extract_archive

from resnet.errors import ChecksumError, DataError


def download_file(url: str, dest: Path, md5: str | None) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``; verify ``md5``; remove the partial file on any failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    part.unlink(missing_ok=True)
    try:
        download_url(url, str(dest.parent), filename=part.name, md5=None)
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        part.unlink(missing_ok=True)
        raise DataError(
            f"download of {url} failed ({error}); check the network, or download it by hand to {dest} and run again"
        ) from error
    if md5 is not None:
        actual = calculate_md5(str(part))
        if actual != md5:
            part.unlink(missing_ok=True)
            raise ChecksumError(
                f"checksum mismatch for {url}: MD5 {actual}, published {md5}; the partial file was removed, "
                "try again (a proxy or truncated transfer is the usual cause)"
            )
    part.replace(dest)
    return dest


def extract(archive: Path, into: Path) -> None:
    """Extract a downloaded archive (tar, tar.gz, zip) with torchvision's helper."""
    try:
        extract_archive(str(archive), str(into))
    except Exception as error:
        raise DataError(f"cannot extract {archive}: {error}; delete it and download again") from error


def file_md5(path: Path) -> str:
    """MD5 of a file's bytes."""
    return calculate_md5(str(path))


def content_md5(path: Path) -> str:
    """MD5 of a file's *decompressed* content (a ``.gz`` is decompressed on the fly, anything else as is)."""
    digest = hashlib.md5()
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except (OSError, EOFError) as error:
        raise DataError(f"cannot read {path}: {error}; the file is corrupt or truncated, replace it") from error
    return digest.hexdigest()
