"""The package metadata and set-up files keep their promises (issue: foundation)."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def requirement_names(path: Path) -> list[str]:
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(re.split(r"[<>=!~\[ ]", line, maxsplit=1)[0])
    return names


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_requirement_is_pinned_exactly():
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[normalise(name)] = version.strip()
    missing = [n for n in requirement_names(REPO / "requirements.txt") if normalise(n) not in pins]
    assert not missing, f"requirements without an exact pin in constraints.txt: {missing}"
    assert pins["numpy"].startswith("1."), "nuscenes-devkit needs numpy<2"


def _dependencies(package_xml: Path) -> dict[str, set[str]]:
    root = ET.parse(package_xml).getroot()
    assert root.tag == "package" and root.get("format") == "3"
    deps: dict[str, set[str]] = {}
    for element in root:
        if element.tag.endswith("depend"):
            deps.setdefault(element.tag, set()).add(element.text.strip())
    return deps


def test_package_xml_declares_runtime_and_test_dependencies():
    deps = _dependencies(REPO / "package.xml")
    runtime = deps.get("depend", set()) | deps.get("exec_depend", set())
    for name in ["rclpy", "sensor_msgs", "nav_msgs", "std_msgs", "diagnostic_msgs", "distillnerf_msgs",
                 "cv_bridge", "message_filters", "sensor_msgs_py", "tf2_ros", "launch", "launch_ros"]:
        assert name in runtime, f"package.xml lacks a runtime dependency on {name}"
    for name in ["launch_testing", "launch_testing_ros", "python3-pytest"]:
        assert name in deps.get("test_depend", set()), f"package.xml lacks a test dependency on {name}"
    assert deps["buildtool_depend"] == {"ament_python"}


def test_interface_package_is_a_cmake_rosidl_package():
    deps = _dependencies(REPO / "msg" / "package.xml")
    assert "rosidl_default_generators" in deps["buildtool_depend"]
    cmake = (REPO / "msg" / "CMakeLists.txt").read_text()
    assert "rosidl_generate_interfaces" in cmake
    for msg in sorted((REPO / "msg" / "msg").glob("*.msg")):
        assert f'"msg/{msg.name}"' in cmake, f"{msg.name} is not generated"


def test_ament_resource_marker_and_data_files_exist():
    assert (REPO / "resource" / "distillnerf_ros").is_file()
    setup_py = (REPO / "setup.py").read_text()
    for folder in ["launch", "config"]:
        assert f"share/{{PACKAGE}}/{folder}" in setup_py


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_second_setup_is_a_no_op():
    # `make -q` exits 0 only when the target is up to date: a second `make setup` would install nothing.
    if not (REPO / ".venv" / ".setup-done").exists():
        pytest.skip("not running inside the environment `make setup` built")
    result = subprocess.run(["make", "-q", "setup"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, "make setup is out of date: a second run would reinstall"
