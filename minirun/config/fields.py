"""Typed access to parsed JSON/YAML, with errors that name the JSON path.

Used by every parser in this package, so that a wrong type anywhere reads
``config.json: process.args[0]: expected a string, got 5``.
"""

from __future__ import annotations

from typing import Any

from minirun.errors import ConfigError

_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list",
               dict: "an object", float: "a number"}


def describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if len(value) < 40 else "a string"
    if isinstance(value, (int, float)):
        return str(value)
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def check_type(value: Any, kind: type, where: str) -> Any:
    """Return ``value`` if it has type ``kind`` (bool is not an int here), else raise."""
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise ConfigError(where, f"expected {_TYPE_NAMES[kind]}, got {describe(value)}")
    return value


def field(obj: dict, key: str, kind: type, where: str, default: Any = None,
          required: bool = False) -> Any:
    """``obj[key]`` checked against ``kind``; ``where`` is the path of ``obj`` itself."""
    path = f"{where}.{key}" if where else key
    if key not in obj or obj[key] is None:
        if required:
            raise ConfigError(path, "is required")
        return default
    return check_type(obj[key], kind, path)


def str_list(obj: dict, key: str, where: str) -> list[str]:
    """A list of strings; each bad item is reported with its index."""
    path = f"{where}.{key}" if where else key
    items = field(obj, key, list, where, default=[])
    return [check_type(item, str, f"{path}[{i}]") for i, item in enumerate(items)]


def objects(obj: dict, key: str, where: str) -> list[tuple[str, dict]]:
    """A list of objects, each paired with its own path (``mounts[2]``)."""
    path = f"{where}.{key}" if where else key
    items = field(obj, key, list, where, default=[])
    return [(f"{path}[{i}]", check_type(item, dict, f"{path}[{i}]"))
            for i, item in enumerate(items)]


def refuse_unsupported(obj: dict, unsupported: dict[str, str], where: str) -> None:
    """Fields minirun knows but does not implement are refused by name, never ignored."""
    for key, why in unsupported.items():
        if obj.get(key) not in (None, "", [], {}):
            path = f"{where}.{key}" if where else key
            raise ConfigError(path, f"not supported by minirun ({why})")
