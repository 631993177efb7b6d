"""Publish a ROS 2 bag over rclpy with its recorded timing and ``/clock``: ``ros2 bag play`` for machines without
rosbag2.

Gaps longer than ``max_gap`` seconds of recording in which nothing was recorded (e.g. two scenes days apart) are
skipped: the next message goes out at once and ``/clock`` jumps forward with the bag time; stamps are never
rewritten.

Messages are published as the bag's serialized bytes (``Publisher.publish(bytes)``), so nothing is deserialized
and every field arrives exactly as recorded. Topics whose message package is not importable here (e.g.
``tf2_msgs`` in a pip-only rclpy) are skipped with one warning: nodes without TF read the bag's rig file instead.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from distillnerf_ros.conversions import set_stamp

LOG = logging.getLogger(__name__)

CLOCK_TOPIC = "/clock"
DEFAULT_MAX_GAP_S = 1.0  # longer silences are skipped: nuScenes-style bags publish every 0.5 s at most
_STOP_POLL_S = 0.05  # how soon a stop request is seen while waiting for the next message


class BagError(RuntimeError):
    """The path is not a readable ROS 2 bag."""


@dataclass
class ReplayStats:
    published: Counter = field(default_factory=Counter)  # per topic
    passes: int = 0
    wall_seconds: float = 0.0
    clock_messages: int = 0
    skipped_topics: dict[str, str] = field(default_factory=dict)  # topic -> why
    gaps_skipped: int = 0  # silences longer than max_gap that were jumped over
    gap_seconds_skipped: float = 0.0  # recorded seconds they spanned


class StopRequest:
    """A stop flag that a signal handler may set: a plain attribute, no lock. (``threading.Event.set`` takes a lock
    that the interrupted main thread may be holding inside ``Event.wait``: a handler calling it can deadlock.)"""

    def __init__(self) -> None:
        self.reason: str | None = None

    def set(self, reason: str = "stop") -> None:
        self.reason = reason

    def is_set(self) -> bool:
        return self.reason is not None


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
        set_stamp(self._clock_message.clock, timestamp_ns)
        self.clock_publisher.publish(self._clock_message)
        self.stats.clock_messages += 1

    def publish(self, message: BagMessage) -> None:
        """Publish one message now, after advancing /clock to its recorded time."""
        self.publish_clock(message.timestamp_ns)
        self.publishers[message.topic].publish(message.data)
        self.stats.published[message.topic] += 1

    def wait_for_subscribers(self, topics: list[str], timeout: float, stop=None) -> None:
        """Block until each of ``topics`` has a matched subscriber (so a volatile topic loses nothing), or until
        ``stop`` (anything with ``is_set()``) is set."""
        unknown = [t for t in topics if t not in self.publishers]
        if unknown:
            raise BagError(f"--wait-for topic(s) not in the bag or not playable: {', '.join(unknown)}")
        deadline = time.monotonic() + timeout
        while any(self.publishers[t].get_subscription_count() == 0 for t in topics):
            if stop is not None and stop.is_set():
                return
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
             stop=None, max_gap: float = DEFAULT_MAX_GAP_S) -> ReplayStats:
        """Publish with the recorded inter-message timing divided by ``rate``; ``loop`` repeats until ``stop``
        (a ``threading.Event`` or ``StopRequest``) is set. Silences over ``max_gap`` recorded seconds are skipped
        (``max_gap <= 0``: never)."""
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        stop = StopRequest() if stop is None else stop
        max_gap_ns = int(max_gap * 1e9) if max_gap > 0 else None
        start_ns = self.start_ns + int(round(start_s * 1e9))
        began = time.monotonic()
        while not stop.is_set():
            first_ns = wall0 = previous_ns = None
            for message in self.messages(start_s):
                if stop.is_set():
                    break
                if message.timestamp_ns < start_ns:  # a latched message from before --start: at once, unpaced
                    self.publish(message)
                    continue
                if previous_ns is not None and max_gap_ns is not None \
                        and message.timestamp_ns - previous_ns > max_gap_ns:
                    self._skip_gap(previous_ns, message.timestamp_ns)
                    first_ns = None  # pace from this message on, as if the gap had not been recorded
                if first_ns is None:
                    first_ns, wall0 = message.timestamp_ns, time.monotonic()
                self._sleep_until(wall0 + (message.timestamp_ns - first_ns) / 1e9 / rate, first_ns, wall0, rate,
                                  clock_hz, stop)
                if stop.is_set():
                    break
                self.publish(message)
                previous_ns = message.timestamp_ns
            self.stats.passes += 1
            if not loop or previous_ns is None:
                break
        self.stats.wall_seconds = time.monotonic() - began
        return self.stats

    def _skip_gap(self, before_ns: int, after_ns: int) -> None:
        seconds = (after_ns - before_ns) / 1e9
        self.stats.gaps_skipped += 1
        self.stats.gap_seconds_skipped += seconds
        self.node.get_logger().info(
            f"replay: skipping a {describe_seconds(seconds)} gap in the recording (nothing recorded between bag "
            f"times {before_ns / 1e9:.3f} and {after_ns / 1e9:.3f} s); /clock jumps forward")

    def _sleep_until(self, target: float, first_ns: int, wall0: float, rate: float, clock_hz: float,
                     stop) -> None:
        """Wait for ``target`` (monotonic s), advancing /clock at ``clock_hz`` meanwhile like ``ros2 bag play``.
        Sleeps in short slices so that a stop set by a signal handler is seen within ``_STOP_POLL_S``."""
        period = 1.0 / clock_hz if clock_hz > 0 else float("inf")
        next_tick = time.monotonic() + period
        while not stop.is_set():
            now = time.monotonic()
            if now >= target:
                return
            time.sleep(min(_STOP_POLL_S, target - now, max(0.0, next_tick - now)))
            now = time.monotonic()
            if now >= next_tick and now < target and not stop.is_set():
                self.publish_clock(first_ns + int((now - wall0) * rate * 1e9))
                next_tick = now + period


def describe_seconds(seconds: float) -> str:
    """``777600.0 s (9.0 days)``: the seconds, and hours or days when that many."""
    if seconds >= 86400:
        return f"{seconds:.1f} s ({seconds / 86400:.1f} days)"
    if seconds >= 3600:
        return f"{seconds:.1f} s ({seconds / 3600:.1f} h)"
    return f"{seconds:.1f} s"
