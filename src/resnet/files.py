"""Writing files so that nothing is lost: the one atomic write, and the one guard for every command's output.

Every file is written to a temporary file beside its target and renamed onto it, so that a kill or a full disk
leaves the old file or the complete new one, never half of it (and no temporary file behind). A command's output
(``eval --json``, analyses, experiment reports and figures, exports) first passes :func:`check_output`: it is
never an input of the command, a checkpoint or a file of a run directory without ``--force``, never a symbolic
link (a rename would not write where the link points; writing through it would change a file elsewhere), and a
file that appears while the output is being produced is never replaced.

A temporary file's name says whose it is (``.NAME.PID@HOST.XXXXXXXX.tmp``): one left by a killed process (its owner
is gone, or it is older than :data:`STALE_SECONDS`) is removed the next time a file is written in its folder. The
content checksum of what is written (checkpoints, the tensor cache) is here too, so that every reader checks it
the same way.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import socket
import stat
import struct
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from resnet.errors import ResNetError

RUN_MARKERS = ("run.json", "run.lock")  # a folder holding one of these is a run directory
# What a run writes there (resnet.runs.run_dir's names; a test keeps them in step) besides its checkpoints.
RUN_FILES = ("run.json", "run.lock", "config.toml", "metrics.jsonl", "train_curve.jsonl", "summary.json", "curves.png")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
STALE_SECONDS = 6 * 3600  # a temporary file untouched this long is stale whoever made it (a write keeps it fresh)
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]  # a shared folder sees other hosts' files
_TEMPORARY = re.compile(r"^\..+\.(?P<pid>\d+)@(?P<host>[0-9a-f]{8})\.[a-z0-9_]{8}(\.[^.]*)?$")


class OutputError(ResNetError, FileExistsError):
    """An output that may not be written where it was asked (an input, a checkpoint, a run's file, a link)."""


class CreatedMeanwhile(FileExistsError):
    """An exclusive rename found its target created by someone else since the output was checked."""


def temporary_name(path: Path) -> str:
    """The prefix of the temporary files beside ``path`` (``.NAME.PID@HOST.``): hidden, and found again by
    :func:`remove_stale_temporaries` when its owner is gone."""
    return f".{path.name}.{os.getpid()}@{_HOST}."


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files in ``folder`` that a killed process left (a ``kill -9`` runs no cleanup): those
    of a process of this host that is gone, and any untouched for :data:`STALE_SECONDS`. Returns what was removed;
    a file that cannot be removed is left (a read-only folder is no error here)."""
    removed = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            match = _TEMPORARY.match(entry.name)
            if match is None or not entry.is_file(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError):
                gone = match["host"] == _HOST and not _alive(int(match["pid"]))
                if gone or time.time() - entry.stat(follow_symlinks=False).st_mtime > STALE_SECONDS:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # another user's process (or a pid no kill() takes): only the age rule decides
    return True


@contextlib.contextmanager
def staged_file(
    path: str | Path, *, exclusive: bool = False, durable: bool = False, suffix: str = ".tmp"
) -> Iterator[Path]:
    """Yield a new temporary file beside ``path``; when the block ends without an error it is renamed onto
    ``path`` (after ``fsync`` if ``durable``); on any error it is removed and ``path`` is left as it was.

    ``exclusive``: ``path`` must not exist at the rename (a file created meanwhile is never replaced; raises
    ``FileExistsError``). ``suffix`` ends the temporary name (writers that choose the format by the suffix).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    handle, name = tempfile.mkstemp(prefix=temporary_name(path), suffix=suffix, dir=path.parent)
    os.fchmod(handle, _user_mode())  # as any file the user writes, not mkstemp's 0600
    os.close(handle)
    temp = Path(name)
    try:
        yield temp
        if durable:
            with open(temp, "rb+") as stream:
                os.fsync(stream.fileno())
        commit(temp, path, exclusive=exclusive)
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()
    if durable:
        _fsync_directory(path.parent)


def _user_mode() -> int:
    """0666 less the umask: the mode ``open()`` gives a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def commit(temp: Path, target: Path, *, exclusive: bool) -> None:
    """Rename ``temp`` onto ``target``; ``exclusive``: only if ``target`` does not exist (a hard link is atomic)."""
    if not exclusive:
        os.replace(temp, target)
        return
    try:
        os.link(temp, target)
    except FileExistsError:
        raise CreatedMeanwhile(errno.EEXIST, "created meanwhile", str(target)) from None
    except OSError:  # a file system without hard links: check, then rename (a short window)
        if os.path.lexists(target):
            raise CreatedMeanwhile(errno.EEXIST, "created meanwhile", str(target)) from None
        os.replace(temp, target)
        return
    temp.unlink()


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object], *, durable: bool = False) -> None:
    """Write ``path`` through ``write(stream)`` so that readers see the old file or the complete new one."""
    with staged_file(path, durable=durable) as temp, open(temp, "wb") as stream:
        write(stream)


def write_text_atomic(path: str | Path, text: str, *, durable: bool = False) -> None:
    """A small text file (JSON, TOML, a report), replaced atomically."""
    write_atomic(path, lambda stream: stream.write(text.encode()), durable=durable)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (not possible on every platform)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- reading: regular files only ------------------------------------------------------------------------------
class NotARegularFileError(OSError):
    """A FIFO, a device or a socket where a file was expected (reading it would block forever or never end)."""


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "not a regular file")


class FileTooLargeError(OSError):
    """A file larger than its reader's limit, refused from its size before a byte is read."""


def read_regular(path: str | os.PathLike[str], max_bytes: int | None = None, override: str = "") -> bytes:
    """The bytes of a regular file (also behind a link); anything else is refused before a byte is read: a FIFO
    named ``x.png`` would block forever, a link to ``/dev/zero`` would never end. A dangling link is named.

    ``max_bytes``: a larger file is refused from ``fstat`` (a 3 GB "image" is never read into memory); ``override``
    names the setting that raises the limit, for the message."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # opening a FIFO without a writer: no wait
    except FileNotFoundError:
        if os.path.islink(path):
            raise FileNotFoundError(errno.ENOENT, f"a symbolic link to {os.readlink(path)}, which does not exist",
                                    str(path)) from None  # fmt: skip
        raise
    with os.fdopen(fd, "rb") as stream:
        mode = os.fstat(stream.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFileError(errno.EINVAL, f"{_kind(mode)}, not a regular file", str(path))
        size = os.fstat(stream.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            hint = f"; set {override} to read larger files" if override else ""
            raise FileTooLargeError(
                errno.EFBIG, f"{size:,} bytes, above the limit of {max_bytes:,} bytes{hint}", str(path)
            )
        return stream.read()


# --- the content checksum of what is written -------------------------------------------------------------------
def content_checksum(payload: Any) -> str:
    """SHA-256 of a payload's content, independent of how it is serialised (so it can be checked after loading).

    Dicts are hashed in insertion order (kept by pickle), tensors by dtype, shape and raw bytes.
    """
    import torch  # here, not above: the writers of text files (and ``resnet --help``) never load torch

    digest = hashlib.sha256()
    _hash_into(digest, payload, torch)
    return digest.hexdigest()


def _hash_into(digest: Any, value: Any, torch: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}".encode())
        for key, item in value.items():
            _hash_into(digest, key, torch)
            _hash_into(digest, item, torch)
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}".encode())
        for item in value:
            _hash_into(digest, item, torch)
    elif isinstance(value, bool) or value is None:
        digest.update(f"B{value}".encode())
    elif isinstance(value, int):
        digest.update(f"I{value}".encode())
    elif isinstance(value, float):
        digest.update(b"F" + struct.pack("<d", value))
    elif isinstance(value, str):
        digest.update(b"S" + value.encode("utf-8", "surrogatepass") + b"\0")
    elif isinstance(value, (bytes, bytearray)):
        digest.update(b"Y" + len(value).to_bytes(8, "little") + bytes(value))
    else:  # torch.Size, numpy scalars, dtypes...: their repr is stable
        digest.update(f"R{type(value).__name__}:{value!r}".encode())


# --- the guard of every command's output ---------------------------------------------------------------------
@dataclass(frozen=True)
class Output:
    """A checked output path; ``existed`` decides whether the final rename may replace a file."""

    path: Path
    existed: bool


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file (through links); a missing file is the same as nothing."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def describe_existing(path: Path) -> str | None:
    """What protects an existing file from being replaced without ``--force``: a checkpoint, a run's file."""
    if path.suffix in CHECKPOINT_SUFFIXES or zipfile.is_zipfile(path):
        return "a checkpoint" if path.suffix != ".safetensors" else "a weights file"
    run = path.parent
    own = path.name in RUN_FILES or path.name.startswith("events.out.tfevents")
    if own and any((run / marker).exists() for marker in RUN_MARKERS):
        return f"a file of the run directory {run}"
    return None


def check_output(
    path: str | Path,
    *,
    inputs: Iterable[str | Path] = (),
    force: bool = False,
    replace: bool = True,
    option: str = "--out",
) -> Output:
    """Refuse an output that is an input of this command (always), a symbolic link or a directory, or an existing
    checkpoint or run file (unless ``force``); ``replace=False``: any existing file needs ``force``."""
    path = Path(path)
    if path.is_symlink():
        raise OutputError(
            f"{path} is a symbolic link (to {os.readlink(path)}); an output is never written through a link: "
            f"remove the link or choose another {option}"
        )
    if path.is_dir():
        raise OutputError(f"{path} is a directory; give {option} a file name")
    for given in inputs:
        if same_file(path, Path(given)):
            raise OutputError(
                f"{path} is an input of this command, which its output never replaces; choose another {option}"
            )
    existed = os.path.lexists(path)
    if existed and not force:
        protected = describe_existing(path)
        if protected is not None or not replace:
            raise OutputError(
                f"{path} exists and is {protected or 'a file'} this command did not create; pass --force to "
                f"replace it, or choose another {option}"
            )
    return Output(path, existed)


def output_folder(
    out: str | Path, names: Sequence[str], *, inputs: Iterable[str | Path] = (), force: bool = False
) -> list[Output]:
    """The files ``names`` in the folder ``out`` (made if missing), each checked by :func:`check_output`, all
    before the first one is written (and before the slow work that produces them)."""
    out = Path(out)
    if (out.is_symlink() and not out.is_dir()) or (out.exists() and not out.is_dir()):
        raise OutputError(f"--out '{out}' is a file; give a folder for the results")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or str(error)
        raise OutputError(f"cannot create the folder --out '{out}' ({reason}); choose another --out") from None
    inputs = list(inputs)
    return [check_output(out / name, inputs=inputs, force=force) for name in names]


def as_output(path: str | Path | Output) -> Output:
    """An unchecked path as an :class:`Output` (a library call that writes where it is told)."""
    return path if isinstance(path, Output) else Output(Path(path), os.path.lexists(path))


@contextlib.contextmanager
def output_file(output: Output, *, suffix: str = ".tmp") -> Iterator[Path]:
    """The temporary file of a checked output: renamed onto it at the end, never over a file created meanwhile."""
    try:
        with staged_file(output.path, exclusive=not output.existed, suffix=suffix) as temp:
            yield temp
    except CreatedMeanwhile:
        raise created_meanwhile(output.path) from None


def created_meanwhile(path: Path) -> OutputError:
    return OutputError(
        f"{path} was created by another process while this one was writing it; it was left as it is (run the "
        "command again, with --force to replace it)"
    )


def write_output(path: str | Path | Output, text: str) -> Path:
    """Write a checked text output (JSON, Markdown) atomically."""
    output = as_output(path)
    with output_file(output) as temp:
        temp.write_text(text)
    return output.path


def disk_full(error: BaseException) -> bool:
    """Whether a failed write ran out of space (a full disk, a quota, a file-size limit). ``torch.save`` reports it
    as a RuntimeError from its zip writer, whose OSError, if any, is the cause."""
    code = getattr(error, "errno", None)
    if code is None and isinstance(error.__cause__, OSError):
        code = error.__cause__.errno
    text = str(error) if isinstance(error, RuntimeError) else ""
    return code in _DISK_FULL or any(sign in text for sign in ("write failed", "inline_container", "enforce fail"))


def save_figure(figure: object, path: str | Path | Output, **savefig: object) -> bool:
    """Save a matplotlib figure atomically, laid out first (``tight_layout``); a figure that cannot be written (a
    full disk, a read-only folder) is a warning, not an error: the numbers it shows are written elsewhere first.
    Returns whether it was written."""
    output = as_output(path)
    figure.tight_layout()  # type: ignore[attr-defined]
    try:
        with output_file(output, suffix=output.path.suffix) as temp:
            figure.savefig(temp, format=output.path.suffix.lstrip(".") or "png", **savefig)  # type: ignore[attr-defined]
    except OutputError:
        raise
    except (OSError, RuntimeError, ValueError) as error:
        reason = "the disk is full" if disk_full(error) else str(error).splitlines()[0]
        warnings.warn(f"cannot write the figure {output.path} ({reason}); it was not written", stacklevel=2)
        return False
    return True
