"""Building a :class:`Config` from recipe tables and ``key=value`` overrides, each value checked against its type."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Callable
from typing import Any, Union

from resnet.config.schema import CHOICES, RANGES, Config
from resnet.errors import ConfigError

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (the inverse of :func:`nest`); ``model.options`` stays one value."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name != "model.options":
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def all_keys() -> list[str]:
    """Every settable dotted key, for suggestions and documentation."""
    return list(flatten(Config().to_dict()))


def _unknown_key(key: str, where: str) -> ConfigError:
    suggestions = difflib.get_close_matches(key, all_keys(), n=1, cutoff=0.6)
    if not suggestions:  # a right leaf in the wrong section: match the last component only
        leaf = key.rsplit(".", 1)[-1]
        suggestions = [k for k in all_keys() if k.rsplit(".", 1)[-1] == leaf][:1]
    hint = f"; did you mean '{suggestions[0]}'?" if suggestions else "; see docs/training.md for the keys"
    return ConfigError(f"unknown configuration key '{key}' in {where}{hint}")


def _coerce(value: Any, hint: Any, key: str, where: str) -> Any:
    """Check (and gently convert) a value against a field's type."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key, where)
            except ConfigError as error:
                errors.append(error)
        raise errors[0]
    if origin is list:
        if isinstance(value, str):  # --set train.freeze=stem,layer1
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{key}' in {where} must be a list, got {value!r}")
        (item_hint,) = typing.get_args(hint)
        return [_coerce(item, item_hint, key, where) for item in value]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' in {where} must be a table, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "on", "off", "yes", "no", "1", "0"):
            return value.lower() in ("true", "on", "yes", "1")
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            if key in CHOICES and value not in CHOICES[key]:
                close = difflib.get_close_matches(value, CHOICES[key], n=1)
                hint_text = f"; did you mean '{close[0]}'?" if close else ""
                raise ConfigError(
                    f"'{key}' in {where} must be one of {', '.join(CHOICES[key])}, got '{value}'{hint_text}"
                )
            return value
        if isinstance(value, bool) and key in CHOICES and "on" in CHOICES[key]:
            return "on" if value else "off"
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"'{key}' in {where} must be {name}, got {value!r}")


def _apply(target: Any, data: dict[str, Any], where: str, prefix: str = "") -> None:
    hints = typing.get_type_hints(type(target))
    names = {item.name for item in dataclasses.fields(target)}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in names:
            raise _unknown_key(key, where)
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"'{key}' in {where} must be a table of settings, got {value!r}")
            _apply(getattr(target, name), value, where, f"{key}.")
        else:
            setattr(target, name, _coerce(value, hint, key, where))


def merge_dicts(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge, ``update`` winning; tables merge, everything else is replaced."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_dicts(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_from_dict(data: dict[str, Any], where: str = "the configuration") -> Config:
    config = Config()
    _apply(config, data, where)
    return config


def parse_value(text: str) -> Any:
    """A command-line value as TOML (numbers, booleans, lists, quoted strings), else the bare string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


_ASSIGNMENT = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*=(.*)$")


def parse_assignment(text: str) -> tuple[str, Any]:
    match = _ASSIGNMENT.match(text)
    if not match:
        raise ConfigError(f"--set expects key=value (e.g. optim.lr=0.05), got '{text}'")
    return match.group(1), parse_value(match.group(2).strip())


def nest(key: str, value: Any) -> dict[str, Any]:
    """``"a.b.c", 1`` -> ``{"a": {"b": {"c": 1}}}``; keys under ``model.options`` stay free-form."""
    parts = key.split(".")
    nested: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        nested = {part: nested}
    return nested


def apply_overrides(config: Config, overrides: dict[str, Any], where: str = "the command line") -> Config:
    """Set dotted keys on a copy of ``config``, validating each against the schema."""
    data = config.to_dict()
    overrides = dict(overrides)
    # One run length wins: setting epochs clears iterations and vice versa.
    if "train.epochs" in overrides and "train.iterations" not in overrides:
        overrides["train.iterations"] = None
    if "train.iterations" in overrides and "train.epochs" not in overrides:
        overrides["train.epochs"] = None
    for key, value in overrides.items():
        if not key.startswith("model.options."):
            _check_key(key, where)
        data = merge_dicts(data, nest(key, value))
    return config_from_dict(data, where)


def _check_key(key: str, where: str) -> None:
    if key not in all_keys():
        if any(k.startswith(f"{key}.") for k in all_keys()):
            raise ConfigError(f"'{key}' in {where} is a section; set one of its keys, e.g. '{key}.…'")
        raise _unknown_key(key, where)


def _argparse_type(
    convert: Callable[[str], Any], admits: Callable[[Any], bool], expected: str, must_be: str
) -> Callable[[str], Any]:
    """An argparse type: ``convert`` the text, then refuse what ``admits`` does not (one line naming both)."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not admits(value):
            raise argparse.ArgumentTypeError(f"must be {must_be}, got {text}")
        return value

    return parse


# A run of 0 or -3 iterations is a typo, not a request; nan and inf are no lengths or rates either.
positive_int = _argparse_type(int, lambda v: v > 0, "a positive integer", "a positive integer")
positive_float = _argparse_type(
    float, lambda v: math.isfinite(v) and v > 0, "a positive number", "a finite positive number"
)
# A number of DataLoader workers, in the range data.num_workers allows.
workers = _argparse_type(int, RANGES["data.num_workers"].admits, "a number of workers", RANGES["data.num_workers"].what)
