"""Recipes: TOML (or YAML) files of configuration defaults, found by name or path.

Named recipes live in ``recipes/`` at the repository root, so that they are data a user can read and copy. They
are looked up in ``$RESNET_RECIPES``, then relative to this file (a source checkout or an editable install keeps it
at ``<root>/src/resnet/config/``), then in ``<prefix>/share/resnet/recipes`` (where a wheel installs them), then in
``./recipes``; any other recipe is given as a path.
"""

from __future__ import annotations

import difflib
import math
import os
import sys
from pathlib import Path
from typing import Any

from resnet.config.parse import apply_overrides, config_from_dict, merge_dicts, tomllib
from resnet.config.schema import Config
from resnet.config.validate import validate
from resnet.errors import ConfigError

RECIPE_SUFFIXES = (".toml", ".yaml", ".yml")


def recipe_dirs() -> list[Path]:
    """Where named recipes are looked up, in order."""
    dirs = []
    if os.environ.get("RESNET_RECIPES"):
        dirs.append(Path(os.environ["RESNET_RECIPES"]))
    dirs.append(Path(__file__).resolve().parents[3] / "recipes")  # <root>/src/resnet/config/recipes.py
    dirs.append(Path(sys.prefix) / "share" / "resnet" / "recipes")  # an installed wheel's data files
    dirs.append(Path.cwd() / "recipes")
    return [d for i, d in enumerate(dirs) if d.is_dir() and d not in dirs[:i]]


def list_recipes() -> list[str]:
    names = {p.stem for d in recipe_dirs() for p in d.iterdir() if p.suffix in RECIPE_SUFFIXES}
    return sorted(names)


def find_recipe(name_or_path: str) -> Path:
    path = Path(name_or_path).expanduser()
    if path.suffix in RECIPE_SUFFIXES or os.sep in name_or_path:
        if path.is_file():
            return path
        raise ConfigError(f"recipe file '{name_or_path}' does not exist; check the path")
    for directory in recipe_dirs():
        for suffix in RECIPE_SUFFIXES:
            candidate = directory / f"{name_or_path}{suffix}"
            if candidate.is_file():
                return candidate
    known = list_recipes()
    close = difflib.get_close_matches(name_or_path, known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigError(
        f"unknown recipe '{name_or_path}'; {hint}known recipes: {', '.join(known) or 'none found'} "
        f"(searched {', '.join(str(d) for d in recipe_dirs()) or 'no recipes/ folder'}); or pass a path"
    )


def read_recipe(name_or_path: str, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The recipe's settings as a dict, with ``extends = "other"`` resolved (the child wins)."""
    path = find_recipe(name_or_path).resolve()
    if path in _seen:
        raise ConfigError(f"recipe '{path}' extends itself (through {' -> '.join(p.stem for p in _seen)})")
    try:
        if path.suffix == ".toml":
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        else:
            try:
                import yaml
            except ModuleNotFoundError as error:
                raise ConfigError(f"recipe '{path}' is YAML: install PyYAML (pip install pyyaml)") from error
            data = yaml.safe_load(path.read_text()) or {}
    except (tomllib.TOMLDecodeError, ValueError) as error:
        raise ConfigError(f"recipe '{path}' is not valid: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"recipe '{path}' must be a table of settings")
    data.pop("description", None)
    parent = data.pop("extends", None)
    if parent:
        base = read_recipe(_sibling_or_name(path, str(parent)), (*_seen, path))
        data = merge_dicts(base, data)
    return data


def _sibling_or_name(child: Path, parent: str) -> str:
    """``extends`` looks next to the extending recipe first, then among the named recipes."""
    for candidate in (child.parent / parent, *(child.parent / f"{parent}{s}" for s in RECIPE_SUFFIXES)):
        if candidate.is_file():
            return str(candidate)
    return parent


def load_config(recipe: str | None = None, overrides: dict[str, Any] | None = None, *, check: bool = True) -> Config:
    """Defaults, then the recipe, then dotted-key overrides (e.g. ``{"optim.lr": 0.05}``)."""
    data = read_recipe(recipe) if recipe else {}
    where = f"recipe '{recipe}'" if recipe else "the defaults"
    config = config_from_dict(data, where)
    config.recipe = recipe or ""
    # Milestones are written for the recipe's own length; remember it so that shorter runs keep the shape.
    if config.schedule.reference_iterations is None and config.schedule.reference_epochs is None:
        config.schedule.reference_iterations = config.train.iterations
        config.schedule.reference_epochs = config.train.epochs
    if overrides:
        config = apply_overrides(config, overrides)
    if check:
        validate(config)
    return config


def dump_toml(data: dict[str, Any]) -> str:
    """A small TOML writer for configurations (scalars, lists and nested tables; ``None`` is left out)."""
    lines: list[str] = []

    def emit(table: dict[str, Any], prefix: str) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict) and v is not None}
        tables = {k: v for k, v in table.items() if isinstance(v, dict)}
        if prefix and (scalars or not tables):
            lines.append(f"\n[{prefix}]")
        lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in scalars.items())
        for key, value in tables.items():
            emit(value, f"{prefix}.{_toml_key(key)}" if prefix else _toml_key(key))

    emit(data, "")
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else f'"{key}"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None)
        return "{" + items + "}"
    raise ConfigError(f"cannot write {value!r} to TOML")
