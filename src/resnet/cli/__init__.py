"""`resnet` command line: a thin argparse layer over the library.

Each subcommand lives in its own module exposing ``register(subparsers)``; the handler it sets as ``func``
receives the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

from resnet.errors import ResNetError, TrainingInterrupted

COMMAND_MODULES: tuple[str, ...] = (
    "resnet.cli.models",
    "resnet.cli.train",
    "resnet.cli.data",
    "resnet.cli.experiment",
    "resnet.cli.analyze",
    "resnet.cli.eval",
    "resnet.cli.predict",
    "resnet.cli.export",
    "resnet.cli.benchmark",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnet", description="Deep residual networks: build, train, evaluate and analyse."
    )
    parser.add_argument("--version", action="version", version=f"resnet {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("resnet")
    except metadata.PackageNotFoundError:  # a source tree on PYTHONPATH, not installed
        from resnet import __version__

        return __version__


def _plain_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one ``warning: ...`` line, without the source line Python adds."""
    print(f"warning: {message}", file=file if file is not None else sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = warnings.showwarning
    warnings.showwarning = _plain_warning
    try:
        return int(args.func(args) or 0)
    except TrainingInterrupted as stop:
        print(f"resnet {args.command}: {stop}", file=sys.stderr)
        return stop.exit_code
    except ResNetError as error:
        # Errors the user can act on: one clear message, no traceback.
        print(f"resnet {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` and the like: not an error.
        sys.stderr.close()
        return 0
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
