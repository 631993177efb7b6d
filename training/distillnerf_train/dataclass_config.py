"""Build a config dataclass from a YAML mapping: unknown keys are errors, YAML's loose scalars are coerced.

PyYAML reads ``1e-4`` (no dot) as a string and lists where the code wants tuples; both are fixed here so that a
config file means what it says instead of failing deep inside the optimiser.
"""

from __future__ import annotations

from dataclasses import fields


def dataclass_from_dict(cls, data: dict | None, section: str):
    values = dict(data or {})
    by_name = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        raise ValueError(f"{section} config: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(by_name))})")
    for name, value in values.items():
        kind = str(by_name[name].type)
        try:
            if kind == "float" and value is not None:
                values[name] = float(value)
            elif kind == "int" and value is not None:
                values[name] = int(value)
            elif kind == "bool" and not isinstance(value, bool):
                raise ValueError(f"expected true or false, got {value!r}")
            elif kind.startswith("tuple") and isinstance(value, list):
                values[name] = tuple(float(v) if "float" in kind else int(v) if "int" in kind else v for v in value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{section} config: {name}: {error}") from error
    return cls(**values)
