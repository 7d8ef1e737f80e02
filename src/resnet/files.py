"""Writing files so that nothing is lost: the one atomic write, and the one guard for every command's output.

Every file is written to a temporary file beside its target and renamed onto it, so that a kill or a full disk
leaves the old file or the complete new one, never half of it (and no temporary file behind). A command's output
(``eval --json``, analyses, experiment reports and figures, exports) first passes :func:`check_output`: it is
never an input of the command, a checkpoint or a file of a run directory without ``--force``, never a symbolic
link (a rename would not write where the link points; writing through it would change a file elsewhere), and a
file that appears while the output is being produced is never replaced.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from resnet.errors import ResNetError

RUN_MARKERS = ("run.json", "run.lock")  # a folder holding one of these is a run directory
# What a run writes there (resnet.runs.run_dir's names; a test keeps them in step) besides its checkpoints.
RUN_FILES = ("run.json", "run.lock", "config.toml", "metrics.jsonl", "train_curve.jsonl", "summary.json", "curves.png")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class OutputError(ResNetError, FileExistsError):
    """An output that may not be written where it was asked (an input, a checkpoint, a run's file, a link)."""


class CreatedMeanwhile(FileExistsError):
    """An exclusive rename found its target created by someone else since the output was checked."""


def temporary_name(path: Path) -> str:
    """The prefix of the temporary files beside ``path`` (``.NAME.``): hidden, and found again by a cleanup."""
    return f".{path.name}."


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
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- reading: regular files only ------------------------------------------------------------------------------
class NotARegularFileError(OSError):
    """A FIFO, a device or a socket where a file was expected (reading it would block forever or never end)."""


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def read_regular(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a regular file (also behind a link); anything else is refused before a byte is read: a FIFO
    named ``x.png`` would block forever, a link to ``/dev/zero`` would never end. A dangling link is named."""
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
        return stream.read()


# --- the guard of every command's output ---------------------------------------------------------------------
@dataclass(frozen=True)
class Output:
    """A checked output path; ``existed`` decides whether the final rename may replace a file."""

    path: Path
    existed: bool


def _same_file(a: Path, b: Path) -> bool:
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
        if _same_file(path, Path(given)):
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


def save_figure(figure: object, path: str | Path | Output, **savefig: object) -> bool:
    """Save a matplotlib figure atomically; a figure that cannot be written (a full disk, a read-only folder) is a
    warning, not an error: the numbers it shows are written elsewhere first. Returns whether it was written."""
    output = as_output(path)
    try:
        with output_file(output, suffix=output.path.suffix) as temp:
            figure.savefig(temp, format=output.path.suffix.lstrip(".") or "png", **savefig)  # type: ignore[attr-defined]
    except OutputError:
        raise
    except (OSError, RuntimeError, ValueError) as error:
        reason = "the disk is full" if getattr(error, "errno", None) in DISK_FULL else str(error).splitlines()[0]
        warnings.warn(f"cannot write the figure {output.path} ({reason}); it was not written", stacklevel=2)
        return False
    return True
