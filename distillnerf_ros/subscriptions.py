"""The node's camera subscriptions, with input QoS that follows the publishers.

``input_qos: auto`` (the default) subscribes best effort, which matches every publisher, then looks at what the
discovered publishers offer (``get_publishers_info_by_topic``) and re-subscribes reliable when every publisher of
the topic is reliable: a best-effort reader of a reliable multi-megabyte raw image stream loses most images
(36-42 % of 1600x900 rgb8 images arrived in a test at 1 set/s), a reliable one none. This is what rosbag2's
recorder does. ``reliable`` and ``sensor_data`` fix the QoS; raw images over best effort are warned about.
"""

from __future__ import annotations

from rclpy.qos import ReliabilityPolicy

from distillnerf_ros.interface import input_qos, input_topics

#: How often (s) ``auto`` looks at the publishers of topics it has not settled yet.
FOLLOW_PERIOD = 0.5


class CameraSubscriptions:
    def __init__(self, node, params, on_image, on_camera_info, health):
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        self._node, self._health = node, health
        self._depth = params.input_queue_depth
        self._raw = not params.compressed
        self._mode = params.input_qos
        image_type = CompressedImage if params.compressed else Image
        # topic key -> [message type, callback, subscription, reliable?, settled?]
        self._entries: dict[tuple[str, str], list] = {}
        reliable = self._mode == "reliable"
        for camera in params.camera_names:
            topics = input_topics(camera)
            image_topic = topics["compressed"] if params.compressed else topics["image"]
            self._add((camera, "image"), image_type, image_topic, lambda msg, c=camera: on_image(c, msg), reliable)
            self._add((camera, "camera_info"), CameraInfo, topics["camera_info"],
                      lambda msg, c=camera: on_camera_info(c, msg), reliable)
        if self._mode == "sensor_data" and self._raw:
            self._warn_raw_best_effort("input_qos: sensor_data")
        if self._mode == "auto":
            self._timer = node.create_timer(FOLLOW_PERIOD, self.follow_publishers)

    def _add(self, key, msg_type, topic: str, callback, reliable: bool) -> None:
        subscription = self._node.create_subscription(msg_type, topic, callback, input_qos(reliable, self._depth))
        self._entries[key] = [msg_type, callback, subscription, reliable, self._mode != "auto"]

    def follow_publishers(self) -> None:
        """``auto``: settle each topic once its publishers are known (reliable iff all of them are)."""
        for key, entry in self._entries.items():
            msg_type, callback, subscription, reliable, settled = entry
            if settled:
                continue
            topic = subscription.topic_name  # resolved, remappings applied
            publishers = self._node.get_publishers_info_by_topic(topic)
            if not publishers:
                continue
            entry[4] = True
            if all(info.qos_profile.reliability == ReliabilityPolicy.RELIABLE for info in publishers):
                self._node.destroy_subscription(subscription)
                entry[2] = self._node.create_subscription(msg_type, topic, callback, input_qos(True, self._depth))
                entry[3] = True
                self._node.get_logger().info(f"{topic}: its publishers are reliable: subscribed reliable "
                                             "(input_qos: auto)")
            elif self._raw and key[1] == "image":
                self._warn_raw_best_effort(f"{topic} is published best effort")
        if all(entry[4] for entry in self._entries.values()):
            self._timer.cancel()

    def _warn_raw_best_effort(self, why: str) -> None:
        self._node.get_logger().warning(f"raw images subscribed best effort ({why}): DDS drops most multi-megabyte "
                                        "images that way; publish reliable, or compressed images")
        self._health.model["input_qos_warning"] = "raw images over best effort lose most messages"

    def qos_summary(self) -> str:
        """For /diagnostics: e.g. ``auto: 12 reliable`` or ``auto: 6 reliable, 6 best effort, 0 waiting``."""
        reliable = sum(1 for entry in self._entries.values() if entry[3])
        waiting = sum(1 for entry in self._entries.values() if not entry[4])
        best_effort = len(self._entries) - reliable
        return (f"{self._mode}: {reliable} reliable, {best_effort} best effort"
                + (f", {waiting} waiting for publishers" if waiting else ""))
