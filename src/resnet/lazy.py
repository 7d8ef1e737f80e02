"""Package exports that load on first use, so that `import resnet.X` (and `resnet --help`) stays cheap."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str, dict[str, Any]], Any]:
    """A module ``__getattr__`` body: ``name`` from the module ``exports[name]`` (or that module itself when it is
    the package's submodule of that name), cached in the package's ``namespace``."""

    def load(name: str, namespace: dict[str, Any]) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(exports[name])
        value = module if module.__name__ == f"{package}.{name}" else getattr(module, name)
        namespace[name] = value
        return value

    return load
