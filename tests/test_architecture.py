"""The contract between the rooms of ``src/resnet``: who may import whom, and how large a module may grow.

Imports are read from the source (``ast``), including those inside functions, so that a lazy import cannot
hide a cycle.
"""

from __future__ import annotations

import ast
import inspect
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "resnet"
READERS = ("eval", "inference", "export", "analysis", "runs")  # read what training leaves; never train
BOTTOM = ("models", "data", "errors", "files")  # import no other room but the lazy-export and file helpers
# What each room may import: the table of README's Layout section.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "lazy": set(),
    "files": {"errors"},
    "models": {"errors"},
    "data": {"errors", "lazy", "files"},
    "config": {"data", "errors"},
    "runtime": {"config", "data", "errors", "files"},
    "runs": {"config", "models", "errors", "files"},
    "inference": {"runs", "runtime", "config", "models", "data", "errors", "lazy", "files"},
    "eval": {"inference", "runs", "runtime", "data", "models", "errors", "lazy", "files"},
    "train": {"eval", "inference", "runs", "runtime", "config", "data", "models", "errors", "files"},
    "export": {"inference", "models", "errors", "lazy", "files"},
    "analysis": {"inference", "runs", "config", "data", "models", "errors", "files"},
    "experiments": {"train", "runs", "runtime", "config", "data", "models", "errors", "lazy", "files"},
    "detection": {"models", "errors"},
    "benchmarks": {"train", "inference", "runtime", "config", "data", "models", "errors"},
    "cli": {
        "analysis",
        "benchmarks",
        "config",
        "data",
        "eval",
        "experiments",
        "export",
        "files",
        "inference",
        "models",
        "runs",
        "runtime",
        "train",
        "errors",
        "resnet",
    },
    "resnet": {"models", "errors", "inference", "eval", "lazy"},
    "__main__": {"cli"},
}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "resnet"


def _room_of(path: Path) -> str:
    relative = path.relative_to(SRC).with_suffix("")
    return relative.parts[0] if relative.parts[0] != "__init__" else "resnet"


def room_imports() -> dict[str, dict[str, set[str]]]:
    """room -> imported room -> the files that import it."""
    edges: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in SRC.rglob("*.py"):
        source = _room_of(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name == "resnet" or name.startswith("resnet."):
                    target = _room(name)
                    if target != source:
                        edges[source][target].add(str(path.relative_to(SRC)))
    return edges


def _cycle(edges: dict[str, dict[str, set[str]]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in edges.get(node, {}):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in list(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_rooms_import_each_other_without_cycles() -> None:
    edges = room_imports()
    cycle = _cycle(edges)
    assert cycle is None, " -> ".join(cycle or [])


@pytest.mark.parametrize("room", READERS)
def test_readers_of_a_run_import_nothing_from_train(room: str) -> None:
    assert "train" not in room_imports().get(room, {}), sorted(room_imports()[room]["train"])


@pytest.mark.parametrize("room", BOTTOM)
def test_models_and_data_stay_at_the_bottom(room: str) -> None:
    assert set(room_imports().get(room, {})) <= {"errors", "lazy", "files"}, dict(room_imports()[room])


def test_every_room_imports_only_what_the_layout_allows() -> None:
    edges = room_imports()
    assert set(edges) <= set(ALLOWED), sorted(set(edges) - set(ALLOWED))
    extra = {room: sorted(set(targets) - ALLOWED[room]) for room, targets in edges.items()}
    assert not {room: names for room, names in extra.items() if names}


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycle({"a": {"b": set()}, "b": {"c": set()}, "c": {"a": set()}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b": set()}, "b": {}}) is None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports() -> dict[str, dict[str, set[str]]]:
    """module -> imported module (``from resnet.a import b`` names module ``resnet.a.b`` when it is one), counting
    imports inside functions; ``if TYPE_CHECKING:`` blocks are not imports at run time and are left out."""
    modules = {_module_name(path): path for path in SRC.rglob("*.py")}
    edges: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for statement in node.body
            for inner in ast.walk(statement)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("resnet"):
                module = node.module or ""
                targets = {f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names}
            elif isinstance(node, ast.Import):
                targets = {alias.name for alias in node.names}
            else:
                continue
            for target in targets & modules.keys() - {name}:
                edges[name][target].add(str(path.relative_to(SRC)))
    return edges


def test_no_two_modules_import_each_other_even_inside_one_package() -> None:
    cycle = _cycle(module_imports())
    assert cycle is None, " -> ".join(cycle or [])


def test_build_data_takes_the_data_configuration_whole() -> None:
    from resnet.data import DataConfig, build_data

    parameters = list(inspect.signature(build_data).parameters.values())
    assert parameters[0].annotation in (DataConfig, "DataConfig")
    assert len(parameters) - 1 <= 5


@pytest.mark.parametrize("package", ["resnet", "resnet.data", "resnet.inference", "resnet.experiments"])
def test_every_lazy_export_is_declared_once_and_loads(package: str) -> None:
    import importlib

    from resnet.lazy import declared_exports

    module = importlib.import_module(package)
    declared = declared_exports(package, Path(module.__file__ or "").read_text())
    assert declared and set(declared) <= set(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    with pytest.raises(AttributeError):
        _ = module.no_such_export
