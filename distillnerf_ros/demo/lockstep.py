"""Lock-step replay: one keyframe's messages into the node, then wait for its outputs before the next.

Every keyframe is scored on any machine however slow its CPU, and the figures are the same run to run. Latency
is measured per keyframe as wall time from the last input published to the last output received.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from distillnerf_ros.interface import NODE_NAME
from distillnerf_ros.node_process import NodeProcess

from .frames import frame_result
from .ground_truth import GroundTruthIndex
from .options import DemoError, say
from .results import FrameResult


def keyframe_groups(messages, image_topics: set[str]):
    """Consecutive bag messages cut into sets that hold one image of every camera (and what came with them)."""
    group, seen = [], set()
    for message in messages:
        group.append(message)
        if message.topic in image_topics:
            seen.add(message.topic)
            if seen == image_topics:
                yield group
                group, seen = [], set()


class OutputCollector:
    """Subscriptions to the node's outputs; each arrival is stored with its monotonic receive time."""

    def __init__(self, node, cameras: list[str], want_query: bool):
        from distillnerf_msgs.msg import SemanticOccupancy
        from nav_msgs.msg import OccupancyGrid
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image, PointCloud2
        from std_msgs.msg import Float64

        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.received: dict[str, list] = {}
        self.lock = threading.Lock()
        topics = {f"/{NODE_NAME}/output/{cam}/depth": Image for cam in cameras}
        topics[f"/{NODE_NAME}/output/occupancy_grid"] = OccupancyGrid
        topics[f"/{NODE_NAME}/output/semantic_occupancy"] = SemanticOccupancy
        topics[f"/{NODE_NAME}/debug/processing_time_ms"] = Float64
        if want_query:
            topics[f"/{NODE_NAME}/output/feature_query"] = PointCloud2
        self.required = [t for t in topics if not t.endswith("feature_query")]
        self.subscriptions = {t: node.create_subscription(cls, t, lambda m, t=t: self._store(t, m), qos)
                              for t, cls in topics.items()}

    def _store(self, topic: str, message) -> None:
        with self.lock:
            self.received.setdefault(topic, []).append((time.monotonic(), message))

    def matched(self) -> bool:
        return all(s.get_publisher_count() > 0 for s in self.subscriptions.values())

    def take(self) -> dict[str, tuple[float, object]]:
        """The newest message per topic since the last take, and forget the rest."""
        with self.lock:
            newest = {t: items[-1] for t, items in self.received.items() if items}
            self.received.clear()
        return newest

    def complete(self) -> bool:
        with self.lock:
            return all(self.received.get(t) for t in self.required)


def replay_lockstep(bag: Path, cameras: list[str], frames: int, want_query: bool, frame_timeout: float,
                    node_process: NodeProcess, ground_truth: GroundTruthIndex | None,
                    lidar: "LidarTruth | None" = None) -> list[FrameResult]:
    """Publish one keyframe at a time into the node and collect its outputs before the next."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from distillnerf_ros.bag.replay import BagReplayer

    context = rclpy.Context()
    # no rclpy signal handlers: the demo's own turn SIGINT/SIGTERM into KeyboardInterrupt, so cleanup runs
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("distillnerf_demo", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    def spin_until(done, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            if node_process.process.poll() is not None:
                raise DemoError(f"the node exited with code {node_process.process.returncode}:\n"
                                f"{node_process.log_tail()}")
            executor.spin_once(timeout_sec=0.02)
        return True

    try:
        replayer = BagReplayer(node, bag)
        image_topics = {f"/{c}/image/compressed" for c in cameras}
        missing = sorted(image_topics - set(replayer.topics))
        if missing:
            raise DemoError(f"{bag} has no {', '.join(missing)}")
        collector = OutputCollector(node, cameras, want_query)
        inputs = sorted(image_topics | {f"/{c}/camera_info" for c in cameras})
        connected = spin_until(lambda: collector.matched() and all(
            replayer.publishers[t].get_subscription_count() > 0 for t in inputs), 30)
        if not connected:
            raise DemoError(f"the node's topics did not connect within 30 s:\n{node_process.log_tail()}")
        results = []
        for index, group in enumerate(keyframe_groups(replayer.messages(), image_topics)):
            if index >= frames:
                break
            collector.take()
            infos = [m for m in group if m.topic.endswith("/camera_info")]
            for message in infos:  # CameraInfo first and acknowledged, so the node has it before the images
                replayer.publish(message)
            replayer.wait_for_acknowledgements(timeout=5.0, topics=[m.topic for m in infos])
            for attempt in range(2):
                for message in group:
                    if message not in infos or attempt:
                        replayer.publish(message)
                sent = time.monotonic()
                if spin_until(collector.complete, frame_timeout):
                    break
                say(f"frame {index + 1}: no complete output after {frame_timeout:.0f} s, sending it again")
            else:
                raise DemoError(f"the node produced no outputs for keyframe {index + 1}:\n{node_process.log_tail()}")
            if want_query:  # the query cloud comes with the other outputs when the model has a text encoder
                want_query = spin_until(
                    lambda: bool(collector.received.get(f"/{NODE_NAME}/output/feature_query")), 1.0)
            outputs = collector.take()
            latency_ms = (max(arrival for arrival, _ in outputs.values()) - sent) * 1000.0
            results.append(frame_result(group, outputs, cameras, latency_ms, ground_truth, lidar))
            say(f"keyframe {index + 1} (of at most {frames}): outputs after {latency_ms:.0f} ms")
        replayer.wait_for_acknowledgements(timeout=2.0)
        return results
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()


def bag_cameras(bag: Path) -> list[str]:
    """Camera channels of a bag in the model's order (those with an image topic)."""
    from distillnerf.rig import NUSCENES_CAMERAS

    from distillnerf_ros.bag.replay import open_bag

    reader = open_bag(bag)
    try:
        topics = {c.topic for c in reader.connections}
    finally:
        reader.close()
    found = [t.split("/")[1] for t in topics if t.endswith("/image/compressed") and t.count("/") == 3]
    order = {name: i for i, name in enumerate(NUSCENES_CAMERAS)}
    return sorted(found, key=lambda c: (order.get(c, len(order)), c))
