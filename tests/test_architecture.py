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
    "runtime": {"config", "errors"},
    "runs": {"config", "models", "errors", "files"},
    "inference": {"runs", "runtime", "models", "data", "errors", "lazy", "files"},
    "eval": {"inference", "runs", "runtime", "data", "models", "errors", "files"},
    "train": {"eval", "inference", "runs", "runtime", "config", "data", "models", "errors", "files"},
    "export": {"inference", "models", "errors", "files"},
    "analysis": {"inference", "runs", "config", "data", "models", "errors", "files"},
    "experiments": {"train", "runs", "config", "data", "models", "errors", "files"},
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


def test_no_module_over_400_lines() -> None:
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long


def test_build_data_takes_the_data_configuration_whole() -> None:
    from resnet.data import DataConfig, build_data

    parameters = list(inspect.signature(build_data).parameters.values())
    assert parameters[0].annotation in (DataConfig, "DataConfig")
    assert len(parameters) - 1 <= 5
