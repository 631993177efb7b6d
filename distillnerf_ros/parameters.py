"""The node's parameters: one table of names, types, descriptions and ranges; the values live in YAML.

``config/distillnerf.param.yaml`` holds every value (the node reads it for its defaults, and a launch file passes
it or a copy); this module holds what the YAML cannot: each parameter's type, description, range and whether it
may change at run time. A test checks both agree, so a key cannot be added to one and forgotten in the other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from distillnerf.config_files import resolve_config

PARAM_FILE = "distillnerf.param.yaml"

INPUT_QOS_CHOICES = ("sensor_data", "reliable")
DEVICE_CHOICES = ("auto", "cuda", "cpu")


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    type: type  # bool, int, float, str or list (of str)
    description: str
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    dynamic: bool = False  # may be changed while the node runs


SPECS: tuple[ParameterSpec, ...] = (
    ParameterSpec("camera_names", list, "Input cameras (one ~/input/<CAM>/ topic pair each), a subset of the "
                  "model's cameras."),
    ParameterSpec("compressed", bool, "Subscribe to sensor_msgs/CompressedImage on ~/input/<CAM>/image/compressed "
                  "instead of sensor_msgs/Image on ~/input/<CAM>/image."),
    ParameterSpec("input_qos", str, "QoS of the image and camera_info subscriptions: sensor_data (best effort) or "
                  "reliable.", choices=INPUT_QOS_CHOICES),
    ParameterSpec("input_queue_depth", int, "History depth of the input subscriptions.", range=(1, 100)),
    ParameterSpec("sync_slop", float, "Largest spread (s) of the stamps of one synchronised camera set.",
                  range=(0.0, 1.0)),
    ParameterSpec("sync_queue_size", int, "Images kept per camera while waiting for a matching set.",
                  range=(1, 100)),
    ParameterSpec("camera_timeout", float, "A camera whose newest image is this far (s, by header stamps) behind "
                  "the other cameras' is left out and the model infers from the others.", range=(0.05, 3600.0)),
    ParameterSpec("checkpoint", str, "Model checkpoint; empty = the shipped model/distillnerf/checkpoints/cpu.pt."),
    ParameterSpec("model_config", str, "Model config name (config/model/), used with random_weights (tests only)."),
    ParameterSpec("random_weights", bool, "Build model_config with seeded random weights instead of loading a "
                  "checkpoint (tests only)."),
    ParameterSpec("random_seed", int, "Seed of the random weights.", range=(0, 2**31 - 1)),
    ParameterSpec("device", str, "Inference device: auto (CUDA when available, else CPU), cuda (fail when absent) "
                  "or cpu.", choices=DEVICE_CHOICES),
    ParameterSpec("use_tf", bool, "Read camera extrinsics from TF (when tf2_ros is installed), else from the rig "
                  "file."),
    ParameterSpec("calibration_file", str, "Rig file (path, or name in config/rigs/) with the camera extrinsics "
                  "and fallback intrinsics."),
    ParameterSpec("base_frame", str, "Frame of the 3D outputs (occupancy, voxels, feature query)."),
    ParameterSpec("query_text", str, "Open-vocabulary query for ~/output/feature_query; empty = none.", dynamic=True),
    ParameterSpec("publish_rgb", bool, "Also publish the rendered RGB images on ~/output/<CAM>/rgb.", dynamic=True),
    ParameterSpec("occupancy_threshold", float, "Occupancy probability above which a voxel is occupied (its "
                  "labels and the query use the same voxels).", range=(0.0, 1.0), dynamic=True),
    ParameterSpec("voxel_cloud_max_points", int, "Most points in ~/output/occupied_voxels, highest probability "
                  "first (RViz stalls above a few hundred thousand).", range=(1, 640000), dynamic=True),
    ParameterSpec("warmup_only", bool, "Load, warm up, log the ready line and exit 0."),
    ParameterSpec("diagnostics_period", float, "Period (s) of the /diagnostics report.", range=(0.05, 60.0)),
    ParameterSpec("warning_period", float, "Shortest interval (s) between two warnings of one kind per camera.",
                  range=(0.0, 3600.0)),
)
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}


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


def check_value(spec: ParameterSpec, value) -> str | None:
    """Why ``value`` is not acceptable for ``spec`` (None when it is)."""
    if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if spec.type is list:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            return f"{spec.name}: expected a non-empty list of names, got {value!r}"
        if len(set(value)) != len(value):
            return f"{spec.name}: names repeat in {value!r}"
        return None
    if not isinstance(value, spec.type) or (spec.type is int and isinstance(value, bool)):
        return f"{spec.name}: expected {spec.type.__name__}, got {type(value).__name__} {value!r}"
    if spec.range is not None and not spec.range[0] <= value <= spec.range[1]:
        return f"{spec.name}: {value!r} outside [{spec.range[0]}, {spec.range[1]}]"
    if spec.choices is not None and value not in spec.choices:
        return f"{spec.name}: {value!r} is not one of {', '.join(spec.choices)}"
    return None


@dataclass
class NodeParameters:
    """The parameter values the node runs with (typed; validated by ``from_mapping``)."""

    camera_names: list
    compressed: bool
    input_qos: str
    input_queue_depth: int
    sync_slop: float
    sync_queue_size: int
    camera_timeout: float
    checkpoint: str
    model_config: str
    random_weights: bool
    random_seed: int
    device: str
    use_tf: bool
    calibration_file: str
    base_frame: str
    query_text: str
    publish_rgb: bool
    occupancy_threshold: float
    voxel_cloud_max_points: int
    warmup_only: bool
    diagnostics_period: float
    warning_period: float

    @classmethod
    def from_mapping(cls, values: dict) -> "NodeParameters":
        problems = [f"missing parameter {name}" for name in SPEC_BY_NAME if name not in values]
        problems += [why for name, spec in SPEC_BY_NAME.items() if name in values
                     for why in [check_value(spec, values[name])] if why]
        if problems:
            raise ValueError("invalid parameters: " + "; ".join(problems))
        typed = {name: (float(values[name]) if SPEC_BY_NAME[name].type is float else values[name])
                 for name in SPEC_BY_NAME}
        typed["camera_names"] = list(typed["camera_names"])
        return cls(**typed)

    @classmethod
    def defaults(cls) -> "NodeParameters":
        return cls.from_mapping(load_param_file())


def declare_parameters(node, defaults: dict | None = None) -> NodeParameters:
    """Declare every parameter on an rclpy node (descriptor with description and range); return the values."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.parameter import Parameter

    defaults = load_param_file() if defaults is None else defaults
    types = {bool: Parameter.Type.BOOL, int: Parameter.Type.INTEGER, float: Parameter.Type.DOUBLE,
             str: Parameter.Type.STRING, list: Parameter.Type.STRING_ARRAY}
    for spec in SPECS:
        description = spec.description
        if spec.choices:
            description += f" One of: {', '.join(spec.choices)}."
        descriptor = ParameterDescriptor(description=description, type=types[spec.type].value,
                                         read_only=not spec.dynamic)
        if spec.range is not None and spec.type is float:
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(spec.range[0]),
                                                                  to_value=float(spec.range[1]), step=0.0)]
        elif spec.range is not None and spec.type is int:
            descriptor.integer_range = [IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]),
                                                     step=1)]
        default = defaults[spec.name]
        if spec.type is float:
            default = float(default)
        node.declare_parameter(spec.name, default, descriptor)
    return NodeParameters.from_mapping({spec.name: node.get_parameter(spec.name).value for spec in SPECS})
