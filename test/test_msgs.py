"""The interface package builds and its message travels over real DDS through rclpy."""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed")
msg_module = pytest.importorskip("distillnerf_msgs.msg", reason="distillnerf_msgs is not built (run make setup)")


def test_semantic_occupancy_round_trip_over_dds(ros_context):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    node = rclpy.create_node("msg_round_trip", context=ros_context)
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    received = []
    node.create_subscription(msg_module.SemanticOccupancy, "semantic_occupancy", received.append, qos)
    publisher = node.create_publisher(msg_module.SemanticOccupancy, "semantic_occupancy", qos)

    labels = np.random.default_rng(0).integers(0, 18, size=4 * 3 * 2, dtype=np.uint8)
    sent = msg_module.SemanticOccupancy()
    sent.header.frame_id = "base_link"
    sent.header.stamp.sec = 1533151603
    sent.origin.x, sent.origin.y, sent.origin.z = -40.0, -40.0, -1.0
    sent.resolution = np.array([0.4, 0.4, 0.4], dtype=np.float32)
    sent.size = np.array([4, 3, 2], dtype=np.uint32)
    sent.class_names = ["others", "barrier", "free"]
    sent.labels = labels.tobytes()
    sent.camera_visible = (labels % 2).astype(np.uint8).tobytes()

    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    deadline = time.monotonic() + 20.0
    while not received and time.monotonic() < deadline:
        publisher.publish(sent)
        executor.spin_once(timeout_sec=0.1)
    executor.shutdown()
    node.destroy_node()

    assert received, "no SemanticOccupancy arrived within 20 s"
    got = received[0]
    assert got.header.frame_id == "base_link" and got.header.stamp.sec == 1533151603
    assert list(got.size) == [4, 3, 2]
    assert np.allclose(got.resolution, 0.4)
    assert got.class_names == ["others", "barrier", "free"]
    assert np.array_equal(np.frombuffer(bytes(got.labels), dtype=np.uint8), labels)
    assert np.array_equal(np.frombuffer(bytes(got.camera_visible), dtype=np.uint8), labels % 2)
