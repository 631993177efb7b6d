"""Publish a ROS 2 bag over rclpy with its recorded timing and ``/clock``: ``ros2 bag play`` for machines without
rosbag2.

Messages are published as the bag's serialized bytes (``Publisher.publish(bytes)``), so nothing is deserialized
and every field arrives exactly as recorded. Topics whose message package is not importable here (e.g.
``tf2_msgs`` in a pip-only rclpy) are skipped with one warning: nodes without TF read the bag's rig file instead.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

LOG = logging.getLogger(__name__)

CLOCK_TOPIC = "/clock"


class BagError(RuntimeError):
    """The path is not a readable ROS 2 bag."""


@dataclass
class ReplayStats:
    published: Counter = field(default_factory=Counter)  # per topic
    passes: int = 0
    wall_seconds: float = 0.0
    clock_messages: int = 0
    skipped_topics: dict[str, str] = field(default_factory=dict)  # topic -> why


@dataclass(frozen=True)
class BagMessage:
    topic: str
    timestamp_ns: int
    data: bytes


def message_class(msgtype: str):
    """rclpy message class of a ``pkg/msg/Name`` type; ImportError/AttributeError when not available here."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def open_bag(bag: str | Path):
    """An opened ``rosbags`` reader; ``BagError`` with the reason when the folder is not a bag."""
    from rosbags.rosbag2 import Reader

    path = Path(bag)
    if not (path / "metadata.yaml").is_file():
        raise BagError(f"{path} is not a ROS 2 bag folder (no metadata.yaml)")
    reader = Reader(path)
    try:
        reader.open()
    except Exception as error:  # rosbags raises its own ReaderError family and storage errors
        raise BagError(f"cannot open bag {path}: {type(error).__name__}: {error}") from error
    return reader


def _is_latched(connection) -> bool:
    from rosbags.interfaces import QosDurability

    profiles = getattr(connection.ext, "offered_qos_profiles", None) or []
    return connection.topic == "/tf_static" or any(p.durability == QosDurability.TRANSIENT_LOCAL for p in profiles)


class BagReplayer:
    """Publishers for every playable topic of a bag on ``node``; ``play`` paces them by the recorded stamps."""

    def __init__(self, node, bag: str | Path, qos_depth: int = 10, clock: bool = True):
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        self.node = node
        self.bag = Path(bag)
        self.stats = ReplayStats()
        self.publishers: dict[str, object] = {}
        self.latched: set[str] = set()
        reader = open_bag(self.bag)
        try:
            self.start_ns, self.end_ns = reader.start_time, reader.end_time
            for connection in reader.connections:
                if connection.topic in self.publishers or connection.topic in self.stats.skipped_topics:
                    continue
                try:
                    cls = message_class(connection.msgtype)
                except (ImportError, AttributeError, ValueError) as error:
                    self.stats.skipped_topics[connection.topic] = f"{connection.msgtype} not importable ({error})"
                    continue
                latched = _is_latched(connection)
                qos = QoSProfile(
                    history=HistoryPolicy.KEEP_LAST, depth=1 if latched else qos_depth,
                    reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
                self.publishers[connection.topic] = node.create_publisher(cls, connection.topic, qos)
                if latched:
                    self.latched.add(connection.topic)
        finally:
            reader.close()
        for topic, why in self.stats.skipped_topics.items():
            node.get_logger().warning(f"replay: skipping {topic}: {why}")
        self.clock_publisher = None
        if clock:
            from rosgraph_msgs.msg import Clock

            self.clock_publisher = node.create_publisher(
                Clock, CLOCK_TOPIC, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
            self._clock_message = Clock()

    @property
    def topics(self) -> list[str]:
        return sorted(self.publishers)

    def messages(self, start_s: float = 0.0) -> Iterator[BagMessage]:
        """The bag's playable messages in time order from ``start_s`` seconds in; latched topics' last message
        before the start comes first, so a late start still has /tf_static."""
        start_ns = self.start_ns + int(round(start_s * 1e9))
        reader = open_bag(self.bag)
        try:
            wanted = [c for c in reader.connections if c.topic in self.publishers]
            if start_ns > self.start_ns:
                latest: dict[str, BagMessage] = {}
                latched = [c for c in wanted if c.topic in self.latched]
                if latched:
                    for connection, stamp, data in reader.messages(connections=latched, stop=start_ns):
                        latest[connection.topic] = BagMessage(connection.topic, stamp, bytes(data))
                yield from sorted(latest.values(), key=lambda m: m.timestamp_ns)
            for connection, stamp, data in reader.messages(connections=wanted, start=start_ns):
                yield BagMessage(connection.topic, stamp, bytes(data))
        finally:
            reader.close()

    def publish_clock(self, timestamp_ns: int) -> None:
        if self.clock_publisher is None:
            return
        self._clock_message.clock.sec, self._clock_message.clock.nanosec = divmod(int(timestamp_ns), 1_000_000_000)
        self.clock_publisher.publish(self._clock_message)
        self.stats.clock_messages += 1

    def publish(self, message: BagMessage) -> None:
        """Publish one message now, after advancing /clock to its recorded time."""
        self.publish_clock(message.timestamp_ns)
        self.publishers[message.topic].publish(message.data)
        self.stats.published[message.topic] += 1

    def wait_for_subscribers(self, topics: list[str], timeout: float) -> None:
        """Block until each of ``topics`` has a matched subscriber (so a volatile topic loses nothing)."""
        unknown = [t for t in topics if t not in self.publishers]
        if unknown:
            raise BagError(f"--wait-for topic(s) not in the bag or not playable: {', '.join(unknown)}")
        deadline = time.monotonic() + timeout
        while any(self.publishers[t].get_subscription_count() == 0 for t in topics):
            if time.monotonic() > deadline:
                missing = [t for t in topics if self.publishers[t].get_subscription_count() == 0]
                raise TimeoutError(f"no subscriber on {', '.join(missing)} after {timeout:.0f} s")
            time.sleep(0.02)

    def wait_for_acknowledgements(self, timeout: float = 5.0, topics: list[str] | None = None) -> bool:
        """Reliable publishers (all, or those of ``topics``): wait until every subscriber acknowledged what was
        sent, e.g. before exiting."""
        from rclpy.duration import Duration

        if topics is None:
            publishers = list(self.publishers.values()) + ([self.clock_publisher] if self.clock_publisher else [])
        else:
            publishers = [self.publishers[t] for t in topics]
        deadline = time.monotonic() + timeout
        acked = True
        for publisher in publishers:
            remaining = max(0.0, deadline - time.monotonic())
            acked &= bool(publisher.wait_for_all_acked(Duration(nanoseconds=int(remaining * 1e9))))
        return acked

    def play(self, rate: float = 1.0, start_s: float = 0.0, loop: bool = False, clock_hz: float = 40.0,
             stop: threading.Event | None = None) -> ReplayStats:
        """Publish with the recorded inter-message timing divided by ``rate``; ``loop`` repeats until ``stop``."""
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        stop = stop or threading.Event()
        began = time.monotonic()
        while not stop.is_set():
            first_ns = wall0 = None
            for message in self.messages(start_s):
                if stop.is_set():
                    break
                if first_ns is None:
                    first_ns, wall0 = message.timestamp_ns, time.monotonic()
                self._sleep_until(wall0 + (message.timestamp_ns - first_ns) / 1e9 / rate, first_ns, wall0, rate,
                                  clock_hz, stop)
                self.publish(message)
            self.stats.passes += 1
            if not loop or first_ns is None:
                break
        self.stats.wall_seconds = time.monotonic() - began
        return self.stats

    def _sleep_until(self, target: float, first_ns: int, wall0: float, rate: float, clock_hz: float,
                     stop: threading.Event) -> None:
        """Wait for ``target`` (monotonic s), advancing /clock at ``clock_hz`` meanwhile like ``ros2 bag play``."""
        period = 1.0 / clock_hz if clock_hz > 0 else float("inf")
        while True:
            now = time.monotonic()
            if now >= target or stop.is_set():
                return
            if stop.wait(min(period, target - now)):
                return
            if clock_hz > 0 and time.monotonic() < target:
                self.publish_clock(first_ns + int((time.monotonic() - wall0) * rate * 1e9))
