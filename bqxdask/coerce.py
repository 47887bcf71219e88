"""Nested dicts (parsed TOML, ``BQX_*`` values) into frozen dataclasses, with one-line errors (SPEC §2).

The generic half of :mod:`bqxdask.config`: it knows dataclasses and type hints (``int``,
``float``, ``bool``, ``str``, ``X | None``, ``tuple[X, ...]``, nested dataclasses), not the
sections. Every refusal is a :class:`~bqxdask.errors.ConfigError` naming the dotted key and
the fix.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError


def build_dataclass(cls: type, raw: Any, *, prefix: str, source: str) -> Any:
    """``cls(**raw)`` with every value coerced to its field's type; unknown keys are refused."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a table; fix: write it as [{prefix.rstrip('.')}]")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name != "source"]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        key = prefix + unknown[0]
        close = ", ".join(names)
        raise ConfigError(f"unknown config key '{key}' (in {source}); fix: remove it or use one of: {close}")
    kwargs = {}
    for name in names:
        if name in raw:
            kwargs[name] = coerce(hints[name], raw[name], prefix + name, source)
    return cls(**kwargs)


def coerce(hint: Any, value: Any, key: str, source: str) -> Any:
    """``value`` as the type ``hint`` says, or a ConfigError naming ``key``."""
    if dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value, prefix=key + ".", source=source)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (type(None) in args and value in ("", "none", "None")):
            return None
        inner = [a for a in args if a is not type(None)][0]
        return coerce(inner, value, key, source)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}; fix: write e.g. {key.split('.')[-1]} = [15, 30]")
        return tuple(coerce(args[0], v, f"{key}[{i}]", source) for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}; fix: write {key.split('.')[-1]} = true")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}; fix: write a whole number without quotes")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}; fix: write a number without quotes")
        return float(value)
    if hint is str:
        if isinstance(value, (dt.datetime, dt.date, dt.time)):
            return value.isoformat()  # TOML reads an unquoted time as a datetime
        if not isinstance(value, str):
            raise ConfigError(
                f'{key} must be a string, got {value!r}; fix: quote it, e.g. {key.split(".")[-1]} = "{value}"'
            )
        return value
    raise AssertionError(f"unsupported config type {hint} for {key}")  # pragma: no cover


def type_at(cls: type, parts: tuple[str, ...]) -> Any:
    """The type hint of the field at the key path ``parts`` below ``cls``; None if there is none."""
    node: Any = cls
    hint: Any = None
    for part in parts:
        if not dataclasses.is_dataclass(node):
            return None
        hints = typing.get_type_hints(node)
        if part not in hints:
            return None
        hint = hints[part]
        node = hint
    return hint


def set_dotted(raw: dict[str, Any], parts: tuple[str, ...], value: Any) -> None:
    """``raw[parts[0]][parts[1]]… = value``, creating the tables on the way."""
    node = raw
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{'.'.join(parts)}: {part} is not a section; fix: check the variable name")
        node = nxt
    node[parts[-1]] = value
