"""launch_testing: the node started by launch with the shipped parameter file and a tiny random-weight model;
ready when its ready line appears (no sleeps), /diagnostics published, clean exit on shutdown.

Runs under plain pytest where ROS 2's launch_testing is installed (its plugin collects the marked
``generate_test_description``); skipped here otherwise. test_launch_files.py checks the launch files without ROS.
"""

from __future__ import annotations

import unittest
from pathlib import Path

import pytest

launch_testing = pytest.importorskip("launch_testing", reason="launch_testing is not installed (ROS 2 install "
                                     "only); test_launch_files.py checks the launch files without it")
launch_ros = pytest.importorskip("launch_ros", reason="launch_ros is not installed (ROS 2 install only)")

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import launch_ros.actions  # noqa: E402

PARAM_FILE = Path(__file__).resolve().parents[1] / "config" / "distillnerf.param.yaml"


@pytest.mark.launch_test
def generate_test_description():
    node = launch_ros.actions.Node(
        package="distillnerf_ros", executable="distillnerf_node", name="distillnerf", output="screen",
        parameters=[str(PARAM_FILE), {"model_config": "tiny", "random_weights": True, "device": "cpu",
                                      "use_tf": False}],
        additional_env={"RCUTILS_LOGGING_USE_STDOUT": "1", "PYTHONUNBUFFERED": "1"},
    )
    return launch.LaunchDescription([node, launch_testing.actions.ReadyToTest()]), {"node": node}


class TestNodeStarts(unittest.TestCase):
    def test_ready_line_and_diagnostics(self, proc_output, node):
        proc_output.assertWaitFor("distillnerf ready:", process=node, timeout=180, stream="stdout")
        from diagnostic_msgs.msg import DiagnosticArray
        from launch_testing_ros import WaitForTopics

        with WaitForTopics([("/diagnostics", DiagnosticArray)], timeout=30.0) as waiter:
            self.assertIn("/diagnostics", waiter.topics_received())


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_code(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, 130])
