"""The layout's promise: the model library imports nothing from ROS or training; ROS and training never meet."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {
    "distillnerf": REPO / "model" / "distillnerf",
    "distillnerf_train": REPO / "training" / "distillnerf_train",
    "distillnerf_ros": REPO / "distillnerf_ros",
}
ROS_MODULES = {"rclpy", "rosidl_runtime_py", "message_filters", "cv_bridge", "sensor_msgs_py", "tf2_ros",
               "launch", "launch_ros", "launch_testing", "sensor_msgs", "std_msgs", "nav_msgs", "geometry_msgs",
               "diagnostic_msgs", "builtin_interfaces", "rosgraph_msgs", "distillnerf_msgs"}
FORBIDDEN = {
    "distillnerf": ROS_MODULES | {"distillnerf_train", "distillnerf_ros"},
    "distillnerf_train": ROS_MODULES | {"distillnerf_ros"},
    "distillnerf_ros": {"distillnerf_train"},
}


def imported_top_level_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_forbidden_import_in_source(package):
    offences = []
    for file in sorted(PACKAGES[package].rglob("*.py")):
        bad = imported_top_level_modules(file) & FORBIDDEN[package]
        if bad:
            offences.append(f"{file.relative_to(REPO)} imports {sorted(bad)}")
    assert not offences, "\n".join(offences)


def test_model_library_imports_without_ros_on_the_path():
    # Block every ROS module and the other packages, then import the whole model library.
    code = f"""
import importlib, pkgutil, sys
blocked = {sorted(FORBIDDEN['distillnerf'])!r}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in blocked:
            raise ImportError('blocked for the boundary test: ' + name)
sys.meta_path.insert(0, Block())
import distillnerf
for info in pkgutil.walk_packages(distillnerf.__path__, 'distillnerf.'):
    importlib.import_module(info.name)
print('ok')
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_boundary_checker_catches_an_offence(tmp_path):
    offending = tmp_path / "bad.py"
    offending.write_text("import os\nfrom rclpy.node import Node\nimport distillnerf_train.trainer\n")
    assert imported_top_level_modules(offending) & FORBIDDEN["distillnerf"] == {"rclpy", "distillnerf_train"}
