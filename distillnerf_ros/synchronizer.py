"""Six-camera synchronisation: approximate-time matching, stamp sanity, and the queue of one to the worker.

Two synchronisers with one interface (``add``, ``set_active``, ``reset``): ``message_filters``'
ApproximateTimeSynchronizer where it is installed, and ``ApproximateSynchronizer`` (this module) otherwise. Both
call ``callback({camera: message})`` with the newest set whose stamps lie within ``slop`` of each other; the
callback runs under the synchroniser's lock, so it must only hand the set on (``LatestSlot.put``), never infer.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable, Hashable, Protocol, Sequence

from distillnerf_ros.conversions import stamp_to_nanoseconds

Callback = Callable[[dict], None]


def header_stamp_ns(msg) -> int:
    return stamp_to_nanoseconds(msg.header.stamp)


class Synchronizer(Protocol):
    def add(self, camera: Hashable, msg) -> None: ...

    def set_active(self, cameras: Sequence[Hashable]) -> None: ...

    def reset(self) -> None: ...


class ApproximateSynchronizer:
    """Approximate-time matching without ROS: per camera a short buffer; each arrival looks for the tightest set
    that contains it, i.e. a window of width ``slop`` holding one message of every active camera.

    A set always completes when its last member arrives, so checking only around the newest message is exact.
    Messages not newer than the last one used for their camera are stale and dropped (counted in ``stale``).
    """

    def __init__(self, cameras: Sequence[Hashable], slop: float, queue_size: int, callback: Callback,
                 stamp_ns: Callable[[object], int] = header_stamp_ns):
        self._slop_ns = int(round(slop * 1e9))
        self._queue_size = queue_size
        self._callback = callback
        self._stamp_ns = stamp_ns
        self._lock = threading.Lock()
        self._all: dict = {camera: deque(maxlen=queue_size) for camera in cameras}
        self._buffers: dict = dict(self._all)  # the active cameras' buffers (inactive ones keep buffering)
        self._last_used: dict = {}
        self.sets = 0
        self.stale = 0

    def add(self, camera, msg) -> None:
        with self._lock:
            buffer = self._all.get(camera)
            if buffer is None:
                return
            stamp = self._stamp_ns(msg)
            if camera in self._last_used and stamp <= self._last_used[camera]:
                self.stale += 1
                return
            buffer.append((stamp, msg))
            if camera in self._buffers:
                self._match(stamp)

    def set_active(self, cameras) -> None:
        with self._lock:
            for camera in cameras:
                self._all.setdefault(camera, deque(maxlen=self._queue_size))
            self._buffers = {camera: self._all[camera] for camera in cameras}
            newest = max((stamp for buffer in self._buffers.values() for stamp, _ in buffer), default=None)
            if newest is not None:
                self._match(newest)

    def reset(self) -> None:
        with self._lock:
            for buffer in self._all.values():
                buffer.clear()
            self._last_used.clear()

    def _match(self, pivot: int) -> None:
        if not self._buffers or any(not buffer for buffer in self._buffers.values()):
            return
        starts = sorted({stamp for buffer in self._buffers.values() for stamp, _ in buffer
                         if pivot - self._slop_ns <= stamp <= pivot})
        best = None
        for low in starts:
            high = low + self._slop_ns
            chosen = {}
            for camera, buffer in self._buffers.items():
                inside = [entry for entry in buffer if low <= entry[0] <= high]
                if not inside:
                    break
                chosen[camera] = min(inside, key=lambda entry: abs(entry[0] - pivot))
            else:
                stamps = [stamp for stamp, _ in chosen.values()]
                spread = max(stamps) - min(stamps)
                if best is None or spread < best[0]:
                    best = (spread, chosen)
        if best is None:
            return
        chosen = best[1]
        newest = max(stamp for stamp, _ in chosen.values())
        for camera, buffer in self._all.items():
            used = chosen[camera][0] if camera in chosen else None
            if used is not None:
                self._last_used[camera] = used
            while buffer and buffer[0][0] <= (used if used is not None else newest - self._slop_ns):
                buffer.popleft()
        self.sets += 1
        self._callback({camera: msg for camera, (_, msg) in chosen.items()})


class MessageFiltersSynchronizer:
    """The same interface over ``message_filters.ApproximateTimeSynchronizer`` (the node feeds its filters)."""

    def __init__(self, cameras: Sequence[Hashable], slop: float, queue_size: int, callback: Callback):
        import message_filters

        self._message_filters = message_filters
        self._slop = slop
        self._queue_size = queue_size
        self._callback = callback
        self._lock = threading.Lock()
        self.sets = 0
        self.stale = 0
        self._build(list(cameras))

    def _build(self, cameras: list) -> None:
        self._cameras = cameras
        self._inputs = {camera: self._message_filters.SimpleFilter() for camera in cameras}
        self._sync = self._message_filters.ApproximateTimeSynchronizer(
            [self._inputs[camera] for camera in cameras], self._queue_size, self._slop)
        self._sync.registerCallback(self._on_set)

    def _on_set(self, *msgs) -> None:
        self.sets += 1
        self._callback(dict(zip(self._cameras, msgs)))

    def add(self, camera, msg) -> None:
        with self._lock:
            target = self._inputs.get(camera)
        if target is not None:
            target.signalMessage(msg)

    def set_active(self, cameras) -> None:
        with self._lock:
            self._build(list(cameras))

    def reset(self) -> None:
        with self._lock:
            self._build(self._cameras)


def message_filters_available() -> bool:
    try:
        import message_filters  # noqa: F401
    except ImportError:
        return False
    return hasattr(message_filters, "ApproximateTimeSynchronizer")


def make_synchronizer(cameras, slop: float, queue_size: int, callback: Callback,
                      prefer_message_filters: bool = True):
    if prefer_message_filters and message_filters_available():
        return MessageFiltersSynchronizer(cameras, slop, queue_size, callback)
    return ApproximateSynchronizer(cameras, slop, queue_size, callback)


class StampMonitor:
    """Per-camera stamp sanity before synchronisation: ``ok``, ``duplicate`` (same stamp again) or ``backwards``
    (older than the camera's last one, e.g. a looped bag). A backwards stamp forgets every camera's history so
    that the other cameras' first looped messages are accepted rather than flagged in turn."""

    def __init__(self):
        self._last: dict = {}

    def check(self, camera, stamp_ns: int) -> str:
        last = self._last.get(camera)
        if last is not None and stamp_ns == last:
            return "duplicate"
        if last is not None and stamp_ns < last:
            self._last.clear()
            self._last[camera] = stamp_ns
            return "backwards"
        self._last[camera] = stamp_ns
        return "ok"


class LatestSlot:
    """A queue of one between the synchroniser and the inference worker: the newest item wins, the item it
    replaces is dropped and counted (``dropped``), so a slow model never builds a backlog."""

    def __init__(self):
        self._condition = threading.Condition()
        self._item = None
        self._closed = False
        self.dropped = 0
        self.put_count = 0

    def put(self, item) -> None:
        with self._condition:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self.put_count += 1
            self._condition.notify()

    def get(self, timeout: float | None = None):
        """The newest item (None on timeout or after ``close``)."""
        with self._condition:
            self._condition.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    @property
    def pending(self) -> int:
        with self._condition:
            return int(self._item is not None)
