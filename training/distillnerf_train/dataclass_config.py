"""Build a config dataclass from a YAML mapping: unknown keys, wrong types and values out of range are errors that
name the section and the key.

Types come from the dataclass's annotations (``int``, ``float``, ``bool``, ``str``, ``X | None``, ``tuple[...]``,
``list[str]``, ``Literal[...]``). YAML's loose scalars are read as meant: ``1e-4`` (PyYAML reads it as a string)
is a float, an int is accepted where a float is wanted, a list where a tuple is. Ranges are declared on the field,
``field(default=..., metadata={"range": (low, high)})`` (inclusive; None = unbounded), and checked here, so a
config file means what it says instead of failing deep inside the optimiser or training nothing.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import fields


def _describe(value) -> str:
    return f"{value!r} ({type(value).__name__})"


def coerce(value, kind, where: str):
    """``value`` as the annotated type ``kind``; ValueError naming ``where`` when it is not one."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return coerce(value, option, where)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError(errors[0] if len(errors) == 1 else f"{where}: got {_describe(value)}")
    if origin is typing.Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            raise ValueError(f"{where}: must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {_describe(value)}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected a whole number, got {_describe(value)}")
        return value
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(f"{where}: expected a number, got {_describe(value)}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected a number, got {_describe(value)}") from None
        if not math.isfinite(number):
            raise ValueError(f"{where}: expected a finite number, got {value!r}")
        return number
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected text, got {_describe(value)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {_describe(value)}")
        args = typing.get_args(kind)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
            items = [coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            item_type = args[0] if args else typing.Any
            items = [v if item_type is typing.Any else coerce(v, item_type, f"{where}[{i}]")
                     for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    return value


def check_range(value, bounds, where: str) -> None:
    low, high = bounds
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if v is None:
            continue
        if (low is not None and v < low) or (high is not None and v > high):
            span = f"{'-inf' if low is None else low}..{'inf' if high is None else high}"
            raise ValueError(f"{where}: {v!r} is outside {span}")


def dataclass_from_dict(cls, data: dict | None, section: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{section} config: expected a mapping of keys to values, got {_describe(data)}")
    values = dict(data)
    by_name = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        raise ValueError(f"{section} config: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(by_name))})")
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        where = f"{section} config: {name}"
        values[name] = coerce(value, hints[name], where)
        if "range" in by_name[name].metadata:
            check_range(values[name], by_name[name].metadata["range"], where)
    return cls(**values)
