"""Typed configurations: dataclasses that validate on load and name the bad field.

Every config is a flat dataclass. ``from_dict`` checks field names and types (an int is
accepted where a float is expected, a JSON list where a list is expected) and then calls the
class's ``validate()`` for ranges and choices. ``parse_set`` turns ``key=value`` strings from
the command line into typed values; ``load_toml`` reads a config file with ``[model]``,
``[train]`` and ``[data]`` tables.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")
INT_LIMIT = 2**63  # integers travel through torch and numpy as int64


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (a number with 5000 digits stays readable)."""
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def choice(default: Any, choices: tuple, help: str = "") -> Any:
    """A dataclass field restricted to ``choices``."""
    return dataclasses.field(default=default, metadata={"choices": choices, "help": help})


def field(default: Any, help: str = "", **kw: Any) -> Any:
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda d=default: list(d), metadata={"help": help, **kw})
    return dataclasses.field(default=default, metadata={"help": help, **kw})


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected {' or '.join(_type_name(a) for a in args)}, got {_short(value)}")
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list like [1,2,3], got {_short(value)}")
        (inner,) = args or (Any,)
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{where}: expected true or false, got {_short(value)}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"{where}: expected an integer, got {_short(value)}")
        if not -INT_LIMIT < value < INT_LIMIT:
            raise ConfigError(f"{where}: expected an integer of magnitude below 2**63, got {_short(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_short(value)}")
        try:
            f = float(value)
        except OverflowError:
            f = math.inf
        if not math.isfinite(f):
            raise ConfigError(f"{where}: expected a finite number, got {_short(value)}")
        return f
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_short(value)}")
        return value
    return value


def fields_of(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def coerce_fields(cls: type, data: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """``data`` with each value coerced to its field's type; an unknown field, a value of the
    wrong type or not among the field's choices is a ConfigError naming it. Ranges and the
    class's ``validate`` are left to ``from_dict``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table of fields, got {_short(data)}")
    known = fields_of(cls)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(
                f"{where}: unknown field {key!r}; known fields: {', '.join(sorted(known))}"
            )
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
        choices = known[key].metadata.get("choices")
        if choices and kwargs[key] not in choices:
            raise ConfigError(f"{where}.{key}: expected one of {', '.join(map(str, choices))}, got {_short(kwargs[key])}")
    return kwargs


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build ``cls`` from a dict, rejecting unknown fields and values of the wrong type."""
    obj = cls(**coerce_fields(cls, data, where))
    check(obj, where)
    return obj


def check(obj: Any, where: str = "config") -> None:
    """Check choices declared on fields, then the class's own ``validate``."""
    for f in dataclasses.fields(obj):
        choices = f.metadata.get("choices")
        value = getattr(obj, f.name)
        if choices and value not in choices:
            raise ConfigError(
                f"{where}.{f.name}: expected one of {', '.join(map(str, choices))}, got {_short(value)}"
            )
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ConfigError as e:
            raise ConfigError(f"{where}.{e}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def parse_value(text: str) -> Any:
    """``[1000,500]`` -> list, ``1e-3`` -> float, ``true`` -> bool, anything else a string."""
    t = text.strip()
    try:
        return json.loads(t)
    except (ValueError, RecursionError):  # not JSON (JSONDecodeError), a number of >4300 digits, [[[[...
        pass
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    return t


def parse_set(items: list[str]) -> list[tuple[str, Any]]:
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set hidden=[400] or --set train.lr=3e-4")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set {item!r}: the key before '=' is empty")
        out.append((key, parse_value(value)))
    return out


def load_toml(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    try:
        found = p.is_file()
    except (OSError, ValueError):  # a name with a NUL byte, or too long
        found = False
    if not found:
        raise ConfigError(f"{p}: config file not found")
    try:
        with open(p, "rb") as f:
            data = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None
    except RecursionError:
        raise ConfigError(f"{p}: not valid TOML (arrays or tables nested too deeply)") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the config file ({e})") from None
    allowed = {"model", "train", "data"}
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"{p}: unknown top-level key {key!r}; expected the tables [model] (with name = \"vae\" and the model's fields), [train], [data]"
            )
    return data


def describe_fields(cls: type) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) for each field, for `genlab list` and --help texts."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_ = f.metadata.get("help", "")
        if f.metadata.get("choices"):
            help_ = (help_ + " " if help_ else "") + "(" + "|".join(map(str, f.metadata["choices"])) + ")"
        out.append((f.name, _type_name(hints[f.name]), default, help_))
    return out
