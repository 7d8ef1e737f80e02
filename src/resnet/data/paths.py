"""Where datasets and caches live.

Search order for a dataset: ``--data-dir`` > ``$RESNET_DATA`` > the user cache directory > a team data store
``shared/datasets`` beside a source checkout > dataset-specific well-known paths (e.g.
``/usr/share/datasets/fashion-mnist``). Each root holds ``ROOT/<dataset-name>/...``
like torchvision's ``root``. Source data may be read-only, so nothing is ever written next to it: downloads go to
the first *writable* root and decoded caches go to the cache directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from resnet.errors import DataError

PathLike = str | os.PathLike


def cache_dir() -> Path:
    """``$RESNET_CACHE`` > ``$XDG_CACHE_HOME/resnet`` > ``~/.cache/resnet`` (not created here)."""
    if os.environ.get("RESNET_CACHE"):
        return Path(os.environ["RESNET_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "resnet"
    return Path.home() / ".cache" / "resnet"


def data_roots(data_dir: PathLike | None = None) -> list[Path]:
    """The roots searched for ``<root>/<dataset-name>``, highest priority first.

    An explicit ``data_dir`` replaces ``$RESNET_DATA`` (as a command-line flag overrides the environment); the
    user cache directory is always searched last so that earlier downloads are found.
    """
    roots: list[Path] = []
    if data_dir is not None:
        roots.append(Path(data_dir).expanduser())
    elif os.environ.get("RESNET_DATA"):
        roots.append(Path(os.environ["RESNET_DATA"]).expanduser())
    roots.append(cache_dir() / "datasets")
    shared = checkout_shared_datasets()
    if shared is not None:
        roots.append(shared)
    return roots


def checkout_shared_datasets() -> Path | None:
    """``<checkout>/../shared/datasets`` when running from a source checkout that has one beside it.

    Teams keep read-only data next to their clones; finding it means `resnet data info cifar10-jpeg` works from a
    fresh clone without flags. Installed (non-editable) packages never look here.
    """
    checkout = Path(__file__).resolve().parents[3]
    if not (checkout / "pyproject.toml").is_file():
        return None
    shared = checkout.parent / "shared" / "datasets"
    return shared.resolve() if shared.is_dir() else None  # resolved: a symlinked store reads as its target


def _writable(path: Path) -> bool:
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    # Mode bits as well as access(): root may write anywhere, but a folder without write bits is source data.
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK) and bool(probe.stat().st_mode & 0o222)


def download_root(data_dir: PathLike | None = None) -> Path:
    """The first writable root: downloads go there (never into read-only source data)."""
    roots = data_roots(data_dir)
    for root in roots:
        if _writable(root):
            return root
    raise DataError(
        f"no writable place to download to: tried {', '.join(str(r) for r in roots)}; "
        "set RESNET_CACHE or pass --data-dir to a writable directory"
    )


def tensor_cache_dir() -> Path:
    """Where decoded uint8 tensors are cached, keyed by content hash."""
    return cache_dir() / "tensors"


def name_problem(name: str) -> str | None:
    """Why a file, folder or class name cannot be used end to end (written to config.toml, run.json, one line of
    output), or None: bytes that are no UTF-8 (Python keeps them as surrogates) and control characters."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as error:
        byte = ord(name[error.start]) - 0xDC00 if 0xDC80 <= ord(name[error.start]) <= 0xDCFF else None
        shown = f"byte 0x{byte:02x}" if byte is not None else "a character"
        return f"is not valid UTF-8 ({shown} at position {error.start}, e.g. a Latin-1 name); rename it in UTF-8"
    control = next((c for c in name if ord(c) < 32 or ord(c) == 127), None)
    if control is not None:
        return f"contains a control character ({control!r}); rename it without one"
    return None
