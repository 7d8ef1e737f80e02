"""Package exports that load on first use, so that `import resnet.X` (and `resnet --help`) stays cheap.

A package declares each export once, as an import under ``if TYPE_CHECKING:`` (what type checkers read); at run
time :func:`lazy_package` reads those same lines and loads each name from its module on first use.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def declared_exports(package: str, source: str) -> dict[str, str]:
    """name -> module of every ``from M import name`` under ``if TYPE_CHECKING:`` (``from package import sub``
    names the submodule ``package.sub``)."""
    exports: dict[str, str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and statement.module:
                    for alias in statement.names:
                        submodule = statement.module == package
                        exports[alias.asname or alias.name] = (
                            f"{package}.{alias.name}" if submodule else statement.module
                        )
    return exports


def lazy_package(package: str, init_file: str, also: Sequence[str] = ()) -> tuple[Callable[[str], Any], list[str]]:
    """``(__getattr__, __all__)`` of ``package``, from the declarations in its ``__init__`` file; ``also`` adds the
    names the package defines itself to ``__all__``."""
    exports = declared_exports(package, Path(init_file).read_text())
    namespace = sys.modules[package].__dict__

    def load(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(exports[name])
        value = module if module.__name__ == f"{package}.{name}" else getattr(module, name)
        namespace[name] = value
        return value

    return load, sorted({*exports, *also})
