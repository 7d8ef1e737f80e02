"""A restricted unpickler for the official CIFAR python batches.

``pickle.loads`` runs whatever a file tells it to, so a crafted ``data_batch_2`` would execute code as soon as a
dataset is described or loaded. The CIFAR files hold only dicts, lists, strings/bytes, numbers and numpy arrays
of a numeric dtype; this unpickler admits exactly the globals needed to rebuild those and refuses anything else.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

# (module, name) pairs a numeric numpy array needs, across numpy 1.x and 2.x pickles
ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes into a protocol-2 pickle (a pure string conversion)
    }
)
NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asks for something a CIFAR batch never contains."""


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(f"it references {module}.{name}, which a CIFAR batch never contains")


def _check(value: Any, depth: int = 0) -> None:
    if depth > 8:
        raise UnsafePickleError("it is nested deeper than a CIFAR batch")
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in NUMERIC_KINDS:
            raise UnsafePickleError(f"it holds an array of dtype {value.dtype}, not a numeric one")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check(key, depth + 1)
            _check(item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check(item, depth + 1)
    elif not isinstance(value, (str, bytes, int, float, bool, type(None), np.dtype)):
        raise UnsafePickleError(f"it holds a {type(value).__name__}, which a CIFAR batch never contains")


def safe_loads(data: bytes) -> Any:
    """Unpickle ``data`` (latin-1 for Python 2 strings, as the official files need) admitting only CIFAR's types."""
    value = _Restricted(io.BytesIO(data), encoding="latin1").load()
    _check(value)
    return value
