"""Errors a user can act on.

Every exception the library raises for bad input derives from ``ResNetError`` so that the CLI can print one clear
message (what, where, what to do) instead of a traceback. They also derive from the matching builtin so that
library users can catch ``ValueError`` / ``FileNotFoundError`` as usual.
"""

from __future__ import annotations


class ResNetError(Exception):
    """Base class of all user-actionable errors."""


class ConfigError(ResNetError, ValueError):
    """A bad option, recipe key or model name."""


class DataError(ResNetError, ValueError):
    """Data that cannot be found, read or verified."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A dataset or file is missing where it was looked for."""


class ChecksumError(DataError):
    """A downloaded or local file does not match its published checksum."""


class CheckpointError(ResNetError, RuntimeError):
    """A checkpoint that is missing, truncated or does not fit the model."""


class TrainingDivergedError(ResNetError, RuntimeError):
    """The loss became NaN or infinite."""


class DistributedError(ResNetError, RuntimeError):
    """A rank of a distributed run died, raised or hung, or the launch environment is unusable."""


class RunDirError(ResNetError, RuntimeError):
    """A run directory that cannot be used (not writable, a file, damaged metadata)."""


class TrainingInterrupted(ResNetError, KeyboardInterrupt):
    """The run stopped on a signal after writing a checkpoint; ``exit_code`` is 128 + the signal number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum

    def __reduce__(self) -> tuple[type, tuple[str, int]]:  # crosses process boundaries (experiment --jobs)
        return (type(self), (str(self), self.signum))


class InputError(ResNetError, ValueError):
    """A tensor a model cannot take (wrong shape, dtype or size)."""
