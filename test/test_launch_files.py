"""The launch files and the RViz config, checked without ROS `launch` installed: parsed with `ast` (and the
pure-Python remapping helper executed alone), then compared with the node's declared topics and parameters,
the files they reference, setup.py's install rules and the bag converter's topic names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from distillnerf_ros.interface import input_topics
from distillnerf_ros.parameters import load_param_file

REPO = Path(__file__).resolve().parents[1]
MAIN_LAUNCH = REPO / "launch" / "distillnerf.launch.py"
REPLAY_LAUNCH = REPO / "launch" / "nuscenes_replay.launch.py"
RVIZ = REPO / "config" / "distillnerf.rviz"


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def calls(module: ast.Module, name: str) -> list[ast.Call]:
    return [node for node in ast.walk(module) if isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == name]


def keyword(call: ast.Call, name: str):
    for item in call.keywords:
        if item.arg == name:
            return item.value
    return None


def declared_arguments(module: ast.Module) -> dict[str, ast.Call]:
    return {ast.literal_eval(call.args[0]): call for call in calls(module, "DeclareLaunchArgument")}


def string_constants(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def load_pure_functions(path: Path) -> dict:
    """Execute only the module's constants and its functions that use no launch API (camera_remappings)."""
    module = tree(path)
    keep = [node for node in module.body
            if isinstance(node, ast.Assign) or (isinstance(node, ast.FunctionDef) and node.name == "camera_remappings")]
    namespace: dict = {}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(path), "exec"), namespace)
    return namespace


def test_main_launch_arguments():
    arguments = declared_arguments(tree(MAIN_LAUNCH))
    assert {"param_file", "calibration_file", "use_sim_time", "rviz"} <= set(arguments)
    for call in arguments.values():
        assert keyword(call, "description") is not None


def test_main_launch_starts_the_registered_executable_with_the_shipped_files():
    module = tree(MAIN_LAUNCH)
    nodes = {ast.literal_eval(keyword(call, "executable")): call for call in calls(module, "Node")}
    assert set(nodes) == {"distillnerf_node", "rviz2"}
    node = nodes["distillnerf_node"]
    assert ast.literal_eval(keyword(node, "package")) == "distillnerf_ros"
    assert ast.literal_eval(keyword(node, "name")) == "distillnerf"
    setup = (REPO / "setup.py").read_text()
    assert "distillnerf_node = distillnerf_ros.node:main" in setup
    # every file the launch file joins onto the share folder exists and is installed there by setup.py
    for join in calls(module, "PathJoinSubstitution"):
        parts = [p for p in string_constants(join)]
        assert (REPO.joinpath(*parts)).is_file(), parts
        assert f'glob("{parts[0]}/*{Path(parts[-1]).suffix}")' in setup, parts
    assert "use_sim_time" in string_constants(keyword(node, "parameters"))
    assert "calibration_file" in string_constants(keyword(node, "parameters"))


def test_remappings_cover_every_node_input_and_match_the_bag_topics():
    namespace = load_pure_functions(MAIN_LAUNCH)
    cameras = namespace["CAMERAS"]
    assert list(cameras) == load_param_file()["camera_names"]
    remappings = dict((source, "".join(target)) for source, target in namespace["camera_remappings"](""))
    expected_sources = {topic for camera in cameras for topic in input_topics(camera).values()}
    assert set(remappings) == expected_sources
    bag_writer = pytest.importorskip("distillnerf_ros.bag.writer", reason="bag converter not present")
    for camera in cameras:
        assert remappings[input_topics(camera)["compressed"]] == bag_writer.image_topic(camera)
        assert remappings[input_topics(camera)["camera_info"]] == bag_writer.camera_info_topic(camera)
        assert remappings[input_topics(camera)["image"]] == f"/{camera}/image"
    prefixed = dict((s, "".join(t)) for s, t in namespace["camera_remappings"]("/sensing"))
    assert prefixed["~/input/CAM_BACK/camera_info"] == "/sensing/CAM_BACK/camera_info"


def test_replay_launch_plays_the_bag_with_clock_and_includes_the_node_on_sim_time():
    module = tree(REPLAY_LAUNCH)
    arguments = declared_arguments(module)
    assert {"bag", "rate", "loop", "param_file", "calibration_file", "rviz"} <= set(arguments)
    commands = [string_constants(keyword(call, "cmd")) for call in calls(module, "ExecuteProcess")]
    assert commands and all(c[:3] == ["ros2", "bag", "play"] and "--clock" in c for c in commands)
    include = calls(module, "IncludeLaunchDescription")[0]
    assert "distillnerf.launch.py" in string_constants(include)
    launch_arguments = keyword(include, "launch_arguments")
    pairs = {ast.literal_eval(k): v for k, v in zip(launch_arguments.func.value.keys,
                                                     launch_arguments.func.value.values)}
    assert ast.literal_eval(pairs["use_sim_time"]) == "true"
    assert set(pairs) <= set(declared_arguments(tree(MAIN_LAUNCH)))
    # the default rig is the one the converter writes inside the bag folder
    bag_writer = pytest.importorskip("distillnerf_ros.bag.writer", reason="bag converter not present")
    assert bag_writer.CALIBRATION_FILE in string_constants(arguments["calibration_file"])


def rviz_displays() -> list[dict]:
    return yaml.safe_load(RVIZ.read_text())["Visualization Manager"]["Displays"]


def test_rviz_config_shows_every_product_with_matching_qos():
    config = yaml.safe_load(RVIZ.read_text())
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == "base_link"
    displays = rviz_displays()
    by_topic = {d["Topic"]["Value"]: d for d in displays if "Topic" in d}
    assert any(d["Class"] == "rviz_default_plugins/TF" for d in displays)
    for camera in load_param_file()["camera_names"]:
        image = by_topic[f"/{camera}/image/compressed"]
        assert image["Class"] == "rviz_default_plugins/Image"
        assert image["Topic"]["Reliability Policy"] == "Best Effort"
    grid = by_topic["/distillnerf/output/occupancy_grid"]
    assert grid["Class"] == "rviz_default_plugins/Map"
    voxels = by_topic["/distillnerf/output/occupancy"]
    assert (voxels["Class"], voxels["Style"], voxels["Color Transformer"]) == (
        "rviz_default_plugins/PointCloud2", "Boxes", "RGB8")
    assert voxels["Size (m)"] == pytest.approx(0.4)
    query = by_topic["/distillnerf/output/feature_query"]
    assert (query["Color Transformer"], query["Channel Name"]) == ("Intensity", "intensity")
    depth = [t for t in by_topic if t.startswith("/distillnerf/output/") and t.endswith("/depth")]
    assert len(depth) == 1 and by_topic[depth[0]]["Class"] == "rviz_default_plugins/Image"
    for topic, display in by_topic.items():  # the node publishes RELIABLE: its displays must not ask for less
        if topic.startswith("/distillnerf/"):
            assert display["Topic"]["Reliability Policy"] == "Reliable", topic


def test_launch_testing_file_is_marked_for_launch_pytest():
    module = tree(REPO / "test" / "test_launch_node.py")
    functions = {f.name: f for f in module.body if isinstance(f, ast.FunctionDef)}
    decorators = [ast.unparse(d) for d in functions["generate_test_description"].decorator_list]
    assert "pytest.mark.launch_test" in decorators
