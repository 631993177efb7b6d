"""The one way a configuration file becomes a typed object: a dataclass built from a YAML mapping, where unknown
keys, missing keys, wrong types, unknown choices and values out of range are errors that name the file or section
and the key.

Types come from the dataclass's annotations (``int``, ``float``, ``bool``, ``str``, ``Path``, ``X | None``,
``X | Y``, ``tuple[...]``, ``list[...]``, ``dict[K, V]``, ``Literal[...]`` choices, and nested config dataclasses,
which are read from nested mappings). YAML's loose scalars are read as meant: ``1e-4`` (PyYAML reads it as a
string) is a float, an int is accepted where a float is wanted, a list where a tuple is, a string where a path is.
Ranges are declared on the field, ``field(default=..., metadata={"range": (low, high)})`` (inclusive; None =
unbounded; checked on every item of a tuple or list, every value of a mapping). A field without a default must be
given. Rules that tie several fields together stay with the config class (for example ``ModelConfig.validate``).

Used by the model config, the training configs, the synthetic world's settings, the demo's options and the ROS
node's parameters, so each reads its file the same way.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import MISSING, fields
from pathlib import PurePath


def _describe(value) -> str:
    return f"{value!r} ({type(value).__name__})"


def _coerce_union(value, kind, where: str):
    options = typing.get_args(kind)
    if value is None and type(None) in options:
        return None
    errors = []
    for option in (o for o in options if o is not type(None)):
        try:
            return coerce(value, option, where)
        except ValueError as error:
            errors.append(str(error))
    if len(errors) == 1:
        raise ValueError(errors[0])
    reasons = [error.removeprefix(f"{where}: ") for error in errors]
    raise ValueError(f"{where}: {' or '.join(reasons)}")


def _coerce_literal(value, kind, where: str):
    choices = typing.get_args(kind)
    # Same type as well as equal: True must not pass for 1, nor 1.0 for 1.
    if not any(type(value) is type(choice) and value == choice for choice in choices):
        raise ValueError(f"{where}: must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _coerce_scalar(value, kind, where: str):
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
    # Path (or another PurePath class)
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ValueError(f"{where}: expected a path, got {_describe(value)}")
    return kind(value)


def _coerce_sequence(value, kind, where: str):
    origin = typing.get_origin(kind)
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{where}: expected a list, got {_describe(value)}")
    args = typing.get_args(kind)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
        items = [coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
    else:
        item_type = args[0] if args else typing.Any
        items = [v if item_type is typing.Any else coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _coerce_mapping(value, kind, where: str):
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a mapping of keys to values, got {_describe(value)}")
    key_type, value_type = typing.get_args(kind) or (typing.Any, typing.Any)
    return {coerce(k, key_type, f"{where}: key {k!r}"): coerce(v, value_type, f"{where}: {k}")
            for k, v in value.items()}


def coerce(value, kind, where: str):
    """``value`` as the annotated type ``kind``; ValueError naming ``where`` when it is not one."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, kind, where)
    if origin is typing.Literal:
        return _coerce_literal(value, kind, where)
    if origin in (tuple, list):
        return _coerce_sequence(value, kind, where)
    if origin is dict:
        return _coerce_mapping(value, kind, where)
    if kind in (bool, int, float, str) or (isinstance(kind, type) and issubclass(kind, PurePath)):
        return _coerce_scalar(value, kind, where)
    if dataclasses.is_dataclass(kind):
        if isinstance(value, kind):  # a section already built: check it in place
            check_dataclass(value, where)
            return value
        return dataclass_from_dict(kind, value, where)
    return value


def check_range(value, bounds, where: str) -> None:
    """ValueError naming ``where`` when ``value`` (or any item of it, at any depth) lies outside ``bounds``."""
    low, high = bounds
    if isinstance(value, dict):
        value = list(value.values())
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if isinstance(v, (list, tuple)):
            check_range(v, bounds, where)
        elif v is not None and ((low is not None and v < low) or (high is not None and v > high)):
            span = f"{'-inf' if low is None else low}..{'inf' if high is None else high}"
            raise ValueError(f"{where}: {v!r} is outside {span}")


def field_value(spec: dataclasses.Field, kind, value, where: str):
    """One field's value as its annotated type ``kind``, range-checked when the field declares a range."""
    typed = coerce(value, kind, where)
    if "range" in spec.metadata:
        check_range(typed, spec.metadata["range"], where)
    return typed


def _required(spec: dataclasses.Field) -> bool:
    return spec.default is MISSING and spec.default_factory is MISSING


def dataclass_from_dict(cls, data: dict | None, section: str):
    """An instance of the dataclass ``cls`` from a mapping. ``section`` names where the mapping comes from (a file,
    a section of one: ``model config 'cpu'``, ``synth config PATH: objects``) and starts every error message."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{section}: expected a mapping of keys to values, got {_describe(data)}")
    by_name = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(by_name), key=str)
    if unknown:
        raise ValueError(f"{section}: unknown keys {', '.join(map(str, unknown))} (known: {', '.join(by_name)})")
    missing = [name for name, spec in by_name.items() if name not in data and _required(spec)]
    if missing:
        raise ValueError(f"{section}: missing keys {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    return cls(**{name: field_value(by_name[name], hints[name], value, f"{section}: {name}")
                  for name, value in data.items()})


def check_dataclass(instance, section: str) -> None:
    """Check the fields of an already built config (types, choices, ranges) as ``dataclass_from_dict`` would."""
    hints = typing.get_type_hints(type(instance))
    for spec in fields(instance):
        field_value(spec, hints[spec.name], getattr(instance, spec.name), f"{section}: {spec.name}")


__all__ = ["check_dataclass", "check_range", "coerce", "dataclass_from_dict", "field_value"]
