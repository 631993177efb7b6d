"""config/distillnerf.param.yaml and the node's declared parameters agree (names, types, ranges, descriptions)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from distillnerf_ros.parameters import SPECS, NodeParameters, check_value, load_param_file, param_file

REPO = Path(__file__).resolve().parents[1]
YAML_FILE = REPO / "config" / "distillnerf.param.yaml"


def test_yaml_uses_the_wildcard_and_is_the_file_the_node_reads():
    data = yaml.safe_load(YAML_FILE.read_text())
    assert list(data) == ["/**"] and list(data["/**"]) == ["ros__parameters"]
    assert param_file().resolve() == YAML_FILE.resolve()


def test_yaml_keys_equal_the_declared_set_with_matching_types():
    values = load_param_file(YAML_FILE)
    assert set(values) == {spec.name for spec in SPECS}
    for spec in SPECS:
        value = values[spec.name]
        if spec.type is float:
            assert isinstance(value, float), f"{spec.name}: write {value} as a float (e.g. {value}.0)"
        elif spec.type is int:
            assert isinstance(value, int) and not isinstance(value, bool), spec.name
        elif spec.type is list:
            assert isinstance(value, list) and all(isinstance(v, str) for v in value), spec.name
        else:
            assert isinstance(value, spec.type), spec.name
        assert check_value(spec, value) is None


def test_required_parameters_and_documented_defaults():
    defaults = NodeParameters.defaults()
    assert defaults.camera_names == ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT",
                                     "CAM_BACK", "CAM_BACK_LEFT"]
    assert defaults.sync_slop == pytest.approx(0.06)
    assert defaults.input_qos == "auto" and defaults.device == "auto" and defaults.base_frame == "base_link"
    assert defaults.checkpoint == "" and defaults.random_weights is False and defaults.warmup_only is False


def test_every_numeric_parameter_has_a_range_and_every_parameter_a_description():
    for spec in SPECS:
        assert len(spec.description) > 20, spec.name
        if spec.type in (int, float):
            assert spec.range is not None and spec.range[0] < spec.range[1], spec.name


@pytest.mark.parametrize("name, value, why", [
    ("sync_slop", 2.0, "outside"), ("device", "tpu", "must be one of"), ("input_qos", "fast", "must be one of"),
    ("camera_names", [], "non-empty"), ("camera_names", ["CAM_FRONT", "CAM_FRONT"], "repeat"),
    ("sync_queue_size", True, "expected a whole number"), ("compressed", "yes", "expected true or false"),
])
def test_bad_values_are_rejected_with_the_reason(name, value, why):
    values = load_param_file(YAML_FILE)
    values[name] = value
    with pytest.raises(ValueError, match=why):
        NodeParameters.from_mapping(values)


def test_missing_key_is_rejected():
    values = load_param_file(YAML_FILE)
    del values["camera_timeout"]
    with pytest.raises(ValueError, match="missing parameter camera_timeout"):
        NodeParameters.from_mapping(values)


def test_declared_on_a_real_node_with_descriptors_and_ranges(ros_context):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter

    from distillnerf_ros.parameters import declare_parameters

    node = rclpy.create_node("param_check", context=ros_context,
                             parameter_overrides=[Parameter("sync_slop", value=0.05)])
    try:
        params = declare_parameters(node)
        assert params.sync_slop == pytest.approx(0.05)  # an override wins over the YAML default
        declared = set(node._parameters) - {"use_sim_time", "start_type_description_service"}  # rclpy built-ins
        assert declared == {spec.name for spec in SPECS}
        for spec in SPECS:
            descriptor = node.describe_parameter(spec.name)
            assert descriptor.description.startswith(spec.description[:20])
            assert descriptor.read_only == (not spec.dynamic)
            if spec.type is float:
                assert descriptor.floating_point_range[0].from_value == spec.range[0]
                assert descriptor.floating_point_range[0].to_value == spec.range[1]
            if spec.type is int:
                assert descriptor.integer_range[0].to_value == spec.range[1]
        # rclpy enforces the declared range and read-only flags at run time
        assert not node.set_parameters([Parameter("occupancy_threshold", value=1.5)])[0].successful
        assert node.set_parameters([Parameter("occupancy_threshold", value=0.3)])[0].successful
        assert not node.set_parameters([Parameter("sync_slop", value=0.02)])[0].successful
    finally:
        node.destroy_node()
