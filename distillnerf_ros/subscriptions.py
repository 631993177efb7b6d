"""The node's camera subscriptions, with input QoS that follows the publishers.

``input_qos: auto`` (the default) subscribes best effort, which matches every publisher, then looks at what the
discovered publishers offer (``get_publishers_info_by_topic``) and re-subscribes reliable when every publisher of
the topic is reliable: a best-effort reader of a reliable multi-megabyte raw image stream loses most images
(36-42 % of 1600x900 rgb8 images arrived in a test at 1 set/s), a reliable one none. This is what rosbag2's
recorder does. ``reliable`` and ``sensor_data`` fix the QoS; raw images over best effort are warned about.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rclpy.qos import ReliabilityPolicy

from distillnerf_ros.interface import input_qos, input_topics

#: How often (s) ``auto`` looks at the publishers of topics it has not settled yet.
FOLLOW_PERIOD = 0.5


@dataclass
class _Input:
    """One input topic's subscription and what ``auto`` knows about it."""

    msg_type: type
    callback: Callable
    subscription: object
    reliable: bool
    settled: bool  # its QoS is final (a fixed input_qos, or auto has seen its publishers)
    is_image: bool


class CameraSubscriptions:
    def __init__(self, node, params, on_image, on_camera_info, health):
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        self._node, self._health = node, health
        self._depth = params.input_queue_depth
        self._raw = not params.compressed
        self._mode = params.input_qos
        image_type = CompressedImage if params.compressed else Image
        self._inputs: list[_Input] = []
        reliable = self._mode == "reliable"
        for camera in params.camera_names:
            topics = input_topics(camera)
            image_topic = topics["compressed"] if params.compressed else topics["image"]
            self._add(image_type, image_topic, lambda msg, c=camera: on_image(c, msg), reliable, True)
            self._add(CameraInfo, topics["camera_info"], lambda msg, c=camera: on_camera_info(c, msg), reliable, False)
        if self._mode == "sensor_data" and self._raw:
            self._warn_raw_best_effort("input_qos: sensor_data")
        if self._mode == "auto":
            self._timer = node.create_timer(FOLLOW_PERIOD, self.follow_publishers)

    def _add(self, msg_type, topic: str, callback, reliable: bool, is_image: bool) -> None:
        subscription = self._node.create_subscription(msg_type, topic, callback, input_qos(reliable, self._depth))
        self._inputs.append(_Input(msg_type, callback, subscription, reliable, self._mode != "auto", is_image))

    def follow_publishers(self) -> None:
        """``auto``: settle each topic once its publishers are known (reliable iff all of them are)."""
        for entry in self._inputs:
            if entry.settled:
                continue
            topic = entry.subscription.topic_name  # resolved, remappings applied
            publishers = self._node.get_publishers_info_by_topic(topic)
            if not publishers:
                continue
            entry.settled = True
            if all(info.qos_profile.reliability == ReliabilityPolicy.RELIABLE for info in publishers):
                self._node.destroy_subscription(entry.subscription)
                entry.subscription = self._node.create_subscription(entry.msg_type, topic, entry.callback,
                                                                    input_qos(True, self._depth))
                entry.reliable = True
                self._node.get_logger().info(f"{topic}: its publishers are reliable: subscribed reliable "
                                             "(input_qos: auto)")
            elif self._raw and entry.is_image:
                self._warn_raw_best_effort(f"{topic} is published best effort")
        if all(entry.settled for entry in self._inputs):
            self._timer.cancel()

    def _warn_raw_best_effort(self, why: str) -> None:
        self._node.get_logger().warning(f"raw images subscribed best effort ({why}): DDS drops most multi-megabyte "
                                        "images that way; publish reliable, or compressed images")
        self._health.model["input_qos_warning"] = "raw images over best effort lose most messages"

    def qos_summary(self) -> str:
        """For /diagnostics: e.g. ``auto: 12 reliable`` or ``auto: 6 reliable, 6 best effort, 0 waiting``."""
        reliable = sum(entry.reliable for entry in self._inputs)
        waiting = sum(not entry.settled for entry in self._inputs)
        best_effort = len(self._inputs) - reliable
        return (f"{self._mode}: {reliable} reliable, {best_effort} best effort"
                + (f", {waiting} waiting for publishers" if waiting else ""))
