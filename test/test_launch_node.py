"""launch_testing: the shipped launch file (launch/distillnerf.launch.py, rviz:=false) starts the node with the
shipped parameter file plus a tiny random-weight model; ready when its ready line appears (no sleeps), the camera
inputs remapped onto the real topics, /diagnostics published, clean exit on shutdown.

Runs under plain pytest where ROS 2's launch_testing and launch_ros are installed (launch_testing's plugin
collects the marked ``generate_test_description``), with distillnerf_ros built and sourced as a ROS package
(``colcon build``; launch finds ``lib/distillnerf_ros/distillnerf_node`` and the share folder through the ament
index, which a ``pip install -e .`` does not register). Skipped where launch_testing is absent;
test_launch_files.py checks the launch files without it.
"""

from __future__ import annotations

import os
import tempfile
import time
import unittest
from pathlib import Path
from unittest import mock

import pytest
import yaml

launch_testing = pytest.importorskip("launch_testing", reason="launch_testing is not installed (ROS 2 install "
                                     "only); test_launch_files.py checks the launch files without it")
# No other module-level skip: launch_testing's pytest plugin imports every test file while collecting, and a
# skip raised then skips the whole folder (seen with launch_testing 3.7.1); the one above is safe, as without
# launch_testing its plugin is not loaded. launch_ros, which the launch file needs, comes with
# launch_testing_ros in every ROS 2 install; without it the test fails, saying so.

import launch  # noqa: E402
import launch.actions  # noqa: E402
import launch.launch_description_sources  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402

from conftest import next_domain_id  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "distillnerf.launch.py"
PARAM_FILE = REPO / "config" / "distillnerf.param.yaml"
#: What the test changes in the shipped parameters: a model that needs no checkpoint, on the CPU, no TF.
TEST_PARAMETERS = {"model_config": "tiny", "random_weights": True, "device": "cpu", "use_tf": False}
CAMERA_PREFIX = "/sensing"
#: This file's own ROS domain, localhost only: launch_testing runs generate_test_description and the tests in one
#: process, so one module constant reaches the node's environment and the test's probe, and other suites'
#: /diagnostics on the machine cannot answer for this node.
DOMAIN_ID = next_domain_id()
ISOLATION_ENV = {"ROS_DOMAIN_ID": str(DOMAIN_ID), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


#: Removed when the test process exits (the node reads the file at start-up).
_TEMPORARY = tempfile.TemporaryDirectory(prefix="distillnerf_launch_test_")


def write_test_parameters() -> str:
    """The shipped parameter file with TEST_PARAMETERS applied, as a file (the launch file takes one
    param_file)."""
    document = yaml.safe_load(PARAM_FILE.read_text())
    document["/**"]["ros__parameters"].update(TEST_PARAMETERS)
    path = Path(_TEMPORARY.name) / "distillnerf.param.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


@pytest.mark.launch_test
def generate_test_description():
    environment = {**ISOLATION_ENV, "RCUTILS_LOGGING_USE_STDOUT": "1", "PYTHONUNBUFFERED": "1"}
    include = launch.actions.IncludeLaunchDescription(
        launch.launch_description_sources.PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={"param_file": write_test_parameters(), "rviz": "false",
                          "camera_topic_prefix": CAMERA_PREFIX}.items(),
    )
    return launch.LaunchDescription([
        *(launch.actions.SetEnvironmentVariable(name, value) for name, value in environment.items()),
        include,
        launch_testing.actions.ReadyToTest(),
    ])


class Probe:
    """A node of its own rclpy context in this file's domain (not launch_testing_ros.WaitForTopics, which
    reads the process environment and whose spin thread races its shutdown); the isolation variables are set
    only while the context starts."""

    def __enter__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        with mock.patch.dict(os.environ, ISOLATION_ENV):
            self.context = rclpy.Context()
            rclpy.init(context=self.context, domain_id=DOMAIN_ID)
        self.node = rclpy.create_node("launch_test_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        return self

    def __exit__(self, *exc):
        self.context.try_shutdown()

    def first_message(self, topic: str, msg_type, timeout: float):
        received = []
        self.node.create_subscription(msg_type, topic, received.append, 10)
        deadline = time.monotonic() + timeout
        while not received and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.5)
        return received[0] if received else None

    def subscriptions_of(self, node_name: str, expected: int, timeout: float) -> set[str]:
        """Topics ``/node_name`` subscribes to, once graph discovery shows at least ``expected`` of them."""
        topics: set[str] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (node_name, "/") in self.node.get_node_names_and_namespaces():
                topics = {t for t, _ in self.node.get_subscriber_names_and_types_by_node(node_name, "/")}
                if len(topics) >= expected:
                    break
            self.executor.spin_once(timeout_sec=0.5)
        return topics


class TestNodeStarts(unittest.TestCase):
    def test_ready_line_remapped_inputs_and_diagnostics(self, proc_output):
        proc_output.assertWaitFor("distillnerf ready:", timeout=180, stream="stdout")
        from diagnostic_msgs.msg import DiagnosticArray

        cameras = yaml.safe_load(PARAM_FILE.read_text())["/**"]["ros__parameters"]["camera_names"]
        with Probe() as probe:
            expected = {f"{CAMERA_PREFIX}/{camera}/{kind}" for camera in cameras
                        for kind in ("image/compressed", "camera_info")}
            subscribed = probe.subscriptions_of("distillnerf", len(expected), timeout=30.0)
            self.assertLessEqual(expected, subscribed)
            self.assertFalse([t for t in subscribed if "/input/" in t and "query" not in t],
                             "a camera input was left on its private ~/input name")
            diagnostics = probe.first_message("/diagnostics", DiagnosticArray, timeout=30.0)
        self.assertIsNotNone(diagnostics, "no /diagnostics within 30 s of the ready line")
        names = {status.name for status in diagnostics.status}
        self.assertLessEqual({"distillnerf: inference", "distillnerf: synchronizer"}
                             | {f"distillnerf: input {camera}" for camera in cameras}, names)
        self.assertEqual({status.hardware_id for status in diagnostics.status}, {"distillnerf"})


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_code(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, 130])
