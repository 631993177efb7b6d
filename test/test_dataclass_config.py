"""The one config mechanism (``distillnerf.dataclass_config``): types from annotations, choices, ranges, nested
sections, and errors that name where the value came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from distillnerf.dataclass_config import check_dataclass, dataclass_from_dict


@dataclass(frozen=True)
class Inner:
    size: tuple[tuple[float, float, float], tuple[float, float, float]]
    rate: float | tuple[float, float] = 1.0


@dataclass
class Outer:
    inner: Inner
    mode: Literal["fast", "exact"] = "fast"
    stride: Literal[1, 2, 4] = 1
    out: Path = Path("out")
    data: Path | None = None
    counts: tuple[int, ...] = field(default=(1,), metadata={"range": (1, None)})
    weights: dict[str, float] = field(default_factory=dict, metadata={"range": (0.0, None)})


def test_values_are_read_as_their_annotations_say():
    config = dataclass_from_dict(Outer, {"inner": {"size": [[1, 2, 3], [4, 5, 6.5]], "rate": [2, 3]},
                                         "mode": "exact", "stride": 4, "out": "x/y", "data": None,
                                         "counts": [2, 3], "weights": {"car": 1, "bus": 2.5}}, "test config f.yaml")
    assert config.inner == Inner(((1.0, 2.0, 3.0), (4.0, 5.0, 6.5)), (2.0, 3.0))
    assert isinstance(config.inner.size[0][0], float) and config.out == Path("x/y") and config.data is None
    assert config.counts == (2, 3) and config.stride == 4
    assert config.weights == {"car": 1.0, "bus": 2.5} and isinstance(config.weights["car"], float)
    assert dataclass_from_dict(Outer, {"inner": {"size": [[0, 0, 0], [1, 1, 1]]}, "data": "d"}, "t").data == Path("d")
    assert dataclass_from_dict(Outer, {"inner": {"size": [[0, 0, 0], [1, 1, 1]], "rate": 7}}, "t").inner.rate == 7.0


@pytest.mark.parametrize("data, message", [
    ({"inner": {"size": [[0, 0, 0], [1, 1, 1]]}, "mdoe": "fast"}, "f.yaml: unknown keys mdoe"),
    ({"inner": {"size": [[0, 0, 0], [1, 1]]}}, "f.yaml: inner: size[1]: expected 3 values, got 2"),
    ({"inner": {"size": [[0, 0, 0], [1, 1, 1]], "speed": 1}}, "f.yaml: inner: unknown keys speed"),
    ({}, "f.yaml: missing keys inner"),
    ({"inner": {}}, "f.yaml: inner: missing keys size"),
    ({"inner": 3}, "f.yaml: inner: expected a mapping"),
    ({"inner": {"size": [[0, 0, 0], [1, 1, 1]], "rate": "busy"}}, "inner: rate: expected a number"),
    ({"inner": {"size": [[0, 0, 0], [1, 1, 1]]}, "mode": "quick"}, "mode: must be one of 'fast', 'exact'"),
    ({"inner": {"size": [[0, 0, 0], [1, 1, 1]]}, "stride": True}, "stride: must be one of 1, 2, 4, got True"),
    ({"inner": {"size": [[0, 0, 0], [1, 1, 1]]}, "stride": 2.0}, "stride: must be one of"),
    ({"inner": {"size": [[0, 0, 0], [1, 1, 1]]}, "out": 5}, "out: expected a path"),
    ({"inner": {"size": [[0, 0, 0], [1, 1, 1]]}, "counts": [1, 0]}, "counts: 0 is outside 1..inf"),
    ({"inner": {"size": [[0, 0, 0], [1, 1, 1]]}, "weights": [1.0]}, "weights: expected a mapping"),
    ({"inner": {"size": [[0, 0, 0], [1, 1, 1]]}, "weights": {"car": "x"}}, "weights: car: expected a number"),
    ({"inner": {"size": [[0, 0, 0], [1, 1, 1]]}, "weights": {1: 1.0}}, "weights: key 1: expected text"),
    ({"inner": {"size": [[0, 0, 0], [1, 1, 1]]}, "weights": {"car": -1}}, "weights: -1.0 is outside 0.0..inf"),
])
def test_every_mistake_is_one_error_naming_the_file_and_key(data, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        dataclass_from_dict(Outer, data, "test config f.yaml")


def test_a_built_config_is_checked_the_same_way():
    check_dataclass(Outer(Inner(((0, 0, 0), (1, 1, 1)))), "built")
    with pytest.raises(ValueError, match="built: mode: must be one of"):
        check_dataclass(Outer(Inner(((0, 0, 0), (1, 1, 1))), mode="quick"), "built")
