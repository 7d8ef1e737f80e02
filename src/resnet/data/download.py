"""Downloading and verifying published files.

Transfers have bounded connect/read timeouts (a proxy that accepts and never answers must not hang a run), a few
retries with back-off for transient failures, a progress bar on a terminal (one plain line otherwise), and a
``.part`` file that is only renamed once its MD5 matches the published checksum (and removed when it does not).
Every failure says how to place the file by hand.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from torchvision.datasets.utils import calculate_md5, extract_archive
from tqdm import tqdm

from resnet.errors import ChecksumError, DataError

TIMEOUT_S = float(os.environ.get("RESNET_DOWNLOAD_TIMEOUT", "30"))  # connect and each read
ATTEMPTS = 3
BACKOFF_S = 2.0  # doubled after each failed attempt
CHUNK = 1 << 16
USER_AGENT = "resnet (python urllib)"


def manual_hint(url: str, dest: Path) -> str:
    """How to put a file in place without this downloader."""
    return (
        f"or download {url} by hand and place it at {dest} (or at DIR/{dest.parent.name}/{dest.name} and pass "
        "--data-dir DIR or set RESNET_DATA=DIR)"
    )


def _transfer(url: str, part: Path, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(part, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        name = url.rsplit("/", 1)[-1]
        if not sys.stderr.isatty():
            size = f" ({total / 1e6:.1f} MB)" if total else ""
            print(f"downloading {url}{size} to {part.parent}", file=sys.stderr, flush=True)
        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=None, file=sys.stderr) as bar:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        if total is not None and received != total:
            raise ConnectionError(f"the transfer ended after {received} of {total} bytes")


def _retryable(error: BaseException) -> bool:
    if isinstance(error, urllib.error.HTTPError):
        return error.code >= 500 or error.code == 429
    return isinstance(error, (urllib.error.URLError, TimeoutError, socket.timeout, ConnectionError, OSError))


def _reason(error: BaseException, timeout: float) -> str:
    cause = getattr(error, "reason", None)
    if isinstance(error, (TimeoutError, socket.timeout)) or isinstance(cause, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout:g} s"
    return str(error) or type(error).__name__


def download_file(url: str, dest: Path, md5: str | None) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``; verify ``md5``; remove the partial file on any failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    part.unlink(missing_ok=True)
    timeout, attempts, delay = TIMEOUT_S, max(1, ATTEMPTS), BACKOFF_S
    for attempt in range(1, attempts + 1):
        try:
            _transfer(url, part, timeout)
            break
        except Exception as error:
            part.unlink(missing_ok=True)
            if attempt == attempts or not _retryable(error):
                tried = f" after {attempt} attempts" if attempt > 1 else ""
                raise DataError(
                    f"download of {url} failed{tried} ({_reason(error, timeout)}); check the network or proxy, "
                    + manual_hint(url, dest)
                ) from error
            print(
                f"warning: download of {url} failed ({_reason(error, timeout)}); retrying in {delay:g} s "
                f"(attempt {attempt + 1} of {attempts})",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(delay)
            delay *= 2
    if md5 is not None:
        actual = calculate_md5(part)
        if actual != md5:
            part.unlink(missing_ok=True)
            raise ChecksumError(
                f"checksum mismatch for {url}: MD5 {actual}, published {md5}; the partial file was removed, "
                "try again (a proxy or truncated transfer is the usual cause), " + manual_hint(url, dest)
            )
    part.replace(dest)
    return dest


def extract(archive: Path, into: Path) -> None:
    """Extract a downloaded archive (tar, tar.gz, zip) with torchvision's helper."""
    try:
        extract_archive(str(archive), str(into))
    except Exception as error:
        raise DataError(f"cannot extract {archive}: {error}; delete it and download again") from error


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
