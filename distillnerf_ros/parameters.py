"""The node's parameters: one typed dataclass declares each parameter's type, description, range, choices and whether
it may change at run time; the values live in YAML.

``config/distillnerf.param.yaml`` holds every value (the node reads it for its defaults, and a launch file passes
it or a copy); ``NodeParameters`` holds what the YAML cannot, as field annotations (``Literal`` for choices) and
``field(metadata=...)`` (description, range, dynamic). Values are checked by the same ``coerce`` / ``check_range``
that read every other config file (``distillnerf.dataclass_config``); ``SPECS`` is derived from the fields for the
ROS parameter descriptors. A test checks the YAML and the fields agree, so a key cannot be added to one and
forgotten in the other.
"""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

import yaml

from distillnerf.config_files import resolve_config
from distillnerf.dataclass_config import check_range, coerce

PARAM_FILE = "distillnerf.param.yaml"

InputQos = Literal["auto", "sensor_data", "reliable"]
Device = Literal["auto", "cuda", "cpu"]
INPUT_QOS_CHOICES = typing.get_args(InputQos)
DEVICE_CHOICES = typing.get_args(Device)


def _param(description: str, range: tuple[float, float] | None = None, dynamic: bool = False):
    """A parameter's field: no default (the YAML holds every value), what ROS shows about it in the metadata."""
    metadata = {"description": description, "dynamic": dynamic}
    if range is not None:
        metadata["range"] = range
    return field(metadata=metadata)


@dataclass
class NodeParameters:
    """The parameter values the node runs with (typed; validated by ``from_mapping``)."""

    camera_names: list[str] = _param("Input cameras (one ~/input/<CAM>/ topic pair each), a subset of the model's "
                                     "cameras.")
    compressed: bool = _param("Subscribe to sensor_msgs/CompressedImage on ~/input/<CAM>/image/compressed instead of "
                              "sensor_msgs/Image on ~/input/<CAM>/image.")
    input_qos: InputQos = _param("QoS of the image and camera_info subscriptions: auto (follow the discovered "
                                 "publishers: reliable when all of a topic's publishers are), sensor_data (best "
                                 "effort) or reliable.")
    input_queue_depth: int = _param("History depth of the input subscriptions.", range=(1, 100))
    sync_slop: float = _param("Largest spread (s) of the stamps of one synchronised camera set.", range=(0.0, 1.0))
    sync_queue_size: int = _param("Images kept per camera while waiting for a matching set.", range=(1, 100))
    camera_timeout: float = _param("A camera whose newest image is this far (s, by header stamps) behind the other "
                                   "cameras' is left out and the model infers from the others.", range=(0.05, 3600.0))
    checkpoint: str = _param("Model checkpoint; empty = the shipped model/distillnerf/checkpoints/cpu.pt.")
    model_config: str = _param("Model config name (distillnerf/configs/model/), used with random_weights (tests "
                               "only).")
    random_weights: bool = _param("Build model_config with seeded random weights instead of loading a checkpoint "
                                  "(tests only).")
    random_seed: int = _param("Seed of the random weights.", range=(0, 2**31 - 1))
    device: Device = _param("Inference device: auto (CUDA when available, else CPU), cuda (fail when absent) or cpu.")
    use_tf: bool = _param("Read camera extrinsics from TF (when tf2_ros is installed), else from the rig file.")
    calibration_file: str = _param("Rig file (path, or name in distillnerf/configs/rigs/) with the camera "
                                   "extrinsics and fallback intrinsics.")
    base_frame: str = _param("Frame of the 3D outputs (occupancy, voxels, feature query).")
    query_text: str = _param("Open-vocabulary query for ~/output/feature_query; empty = none.", dynamic=True)
    publish_rgb: bool = _param("Also publish the rendered RGB images on ~/output/<CAM>/rgb.", dynamic=True)
    occupancy_threshold: float = _param("Occupancy probability above which a voxel is occupied (its labels and the "
                                        "query use the same voxels); negative = the value calibrated into the "
                                        "checkpoint's model config.", range=(-1.0, 1.0), dynamic=True)
    voxel_cloud_max_points: int = _param("Most points in ~/output/occupancy, highest probability first (RViz "
                                         "stalls above a few hundred thousand).", range=(1, 640000), dynamic=True)
    warmup_only: bool = _param("Load, warm up, log the ready line and exit 0.")
    diagnostics_period: float = _param("Period (s) of the /diagnostics report.", range=(0.05, 60.0))
    warning_period: float = _param("Shortest interval (s) between two warnings of one kind per camera.",
                                   range=(0.0, 3600.0))

    @classmethod
    def from_mapping(cls, values: dict) -> "NodeParameters":
        problems = [f"missing parameter {name}" for name in SPEC_BY_NAME if name not in values]
        typed = {}
        for name, spec in SPEC_BY_NAME.items():
            if name in values:
                try:
                    typed[name] = typed_value(spec, values[name])
                except ValueError as error:
                    problems.append(str(error))
        if problems:
            raise ValueError("invalid parameters: " + "; ".join(problems))
        return cls(**typed)

    @classmethod
    def defaults(cls) -> "NodeParameters":
        return cls.from_mapping(load_param_file())


@dataclass(frozen=True)
class ParameterSpec:
    """What ROS is told about one parameter, read off its ``NodeParameters`` field."""

    name: str
    annotation: object  # the field's annotation, which ``coerce`` reads
    type: type  # bool, int, float, str or list (of str): the ROS parameter type
    description: str
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    dynamic: bool = False  # may be changed while the node runs


def _spec(spec_field, annotation) -> ParameterSpec:
    origin = typing.get_origin(annotation)
    choices = typing.get_args(annotation) if origin is Literal else None
    kind = list if origin is list else str if choices else annotation
    return ParameterSpec(spec_field.name, annotation, kind, spec_field.metadata["description"],
                         spec_field.metadata.get("range"), choices, spec_field.metadata["dynamic"])


_HINTS = typing.get_type_hints(NodeParameters)
SPECS: tuple[ParameterSpec, ...] = tuple(_spec(f, _HINTS[f.name]) for f in fields(NodeParameters))
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}


def typed_value(spec: ParameterSpec, value):
    """``value`` as ``spec``'s type; ValueError naming the parameter and the reason when it is not acceptable."""
    typed = coerce(value, spec.annotation, spec.name)
    if spec.range is not None:
        check_range(typed, spec.range, spec.name)
    if spec.type is list:  # a list of names: each one something, none twice
        if not typed or not all(typed):
            raise ValueError(f"{spec.name}: expected a non-empty list of names, got {value!r}")
        if len(set(typed)) != len(typed):
            raise ValueError(f"{spec.name}: names repeat in {value!r}")
    return typed


def check_value(spec: ParameterSpec, value) -> str | None:
    """Why ``value`` is not acceptable for ``spec`` (None when it is)."""
    try:
        typed_value(spec, value)
    except ValueError as error:
        return str(error)
    return None


def param_file() -> Path:
    return resolve_config(PARAM_FILE)


def load_param_file(path: str | os.PathLike | None = None) -> dict:
    """The ``ros__parameters`` mapping of a parameter file (the ``/**`` wildcard or any node entry)."""
    path = Path(path) if path else param_file()
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for entry in data.values():
        if isinstance(entry, dict) and "ros__parameters" in entry:
            return dict(entry["ros__parameters"])
    raise ValueError(f"{path}: no ros__parameters section")


def _descriptor(spec: ParameterSpec):
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.parameter import Parameter

    types = {bool: Parameter.Type.BOOL, int: Parameter.Type.INTEGER, float: Parameter.Type.DOUBLE,
             str: Parameter.Type.STRING, list: Parameter.Type.STRING_ARRAY}
    description = spec.description
    if spec.choices:
        description += f" One of: {', '.join(spec.choices)}."
    descriptor = ParameterDescriptor(description=description, type=types[spec.type].value, read_only=not spec.dynamic)
    if spec.range is not None and spec.type is float:
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(spec.range[0]),
                                                              to_value=float(spec.range[1]), step=0.0)]
    elif spec.range is not None and spec.type is int:
        descriptor.integer_range = [IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]), step=1)]
    return descriptor


def declare_parameters(node, defaults: dict | None = None) -> NodeParameters:
    """Declare every parameter on an rclpy node (descriptor with description and range); return the values."""
    defaults = load_param_file() if defaults is None else defaults
    for spec in SPECS:
        default = defaults[spec.name]
        if spec.type is float:
            default = float(default)
        node.declare_parameter(spec.name, default, _descriptor(spec))
    return NodeParameters.from_mapping({spec.name: node.get_parameter(spec.name).value for spec in SPECS})
