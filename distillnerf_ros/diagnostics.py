"""Health bookkeeping of the node, reported on /diagnostics, and throttled warnings.

Plain Python (no ROS) so the rules are unit-tested; ``to_diagnostic_array`` builds the message. Times are
steady-clock seconds (``time.monotonic``): a replayed bag's 2018 stamps must not make fresh data look stale.
The executor thread and the worker thread both write to ``Health``: every method holds its lock.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

OK, WARN, ERROR, STALE = 0, 1, 2, 3


class ThrottledWarnings:
    """Lets one warning per key through every ``period`` seconds; counts the ones held back."""

    def __init__(self, period: float, clock=time.monotonic):
        self.period = period
        self._clock = clock
        self._last: dict = {}
        self.suppressed: Counter = Counter()

    def allow(self, key) -> bool:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            self.suppressed[key] += 1
            return False
        self._last[key] = now
        return True


@dataclass
class CameraHealth:
    received: int = 0
    last_arrival: float | None = None
    arrivals: deque = field(default_factory=lambda: deque(maxlen=2))
    problems: Counter = field(default_factory=Counter)
    last_problem: str = ""
    last_problem_time: float | None = None
    missing: bool = False
    newest_stamp: int | None = None  # header stamp (ns) of its newest image
    stamps: deque = field(default_factory=lambda: deque(maxlen=2))  # its two newest distinct stamps
    others_received: dict = field(default_factory=dict)  # the other cameras' received counts at its last arrival
    dropouts: int = 0  # times it was declared missing
    recoveries: int = 0  # times it delivered again after that


@dataclass
class Status:
    name: str
    level: int
    message: str
    values: dict


def _locked(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return wrapper


class Health:
    """Counters and recent events of the node; ``statuses()`` turns them into diagnostics entries."""

    def __init__(self, node_name: str, cameras, recent: float = 5.0, clock=time.monotonic):
        self._lock = threading.RLock()
        self.node_name = node_name
        self.cameras = {camera: CameraHealth() for camera in cameras}
        self.recent = recent  # a problem this recent makes its entry WARN
        self._clock = clock
        self.started = clock()
        self.first_stamp: int | None = None  # header stamp (ns) of the first image, for cameras never heard
        self.model: dict = {}
        self.inferences = 0
        self.skipped_no_subscribers = 0
        self.sets_dropped = 0
        self.sets_rejected = 0
        self.resets = 0
        self.last_reset_reason = ""
        self.processing_ms: deque = deque(maxlen=50)
        self.latency_ms: deque = deque(maxlen=50)
        self.query_state = "no query"
        self.errors: Counter = Counter()
        self.last_error = ""
        self.uncalibrated: dict = {}  # camera -> why it has no extrinsics yet (an ERROR until it has)

    @_locked
    def skipped(self) -> None:
        """A set was not inferred: nobody listens to any output."""
        self.skipped_no_subscribers += 1

    @_locked
    def inference(self, processing_ms: float, latency_ms: float) -> None:
        self.inferences += 1
        self.processing_ms.append(processing_ms)
        self.latency_ms.append(latency_ms)

    @_locked
    def rejected_set(self, camera, kind: str, message: str) -> None:
        self.sets_rejected += 1
        self.problem(camera, kind, message)

    @_locked
    def error(self, kind: str, message: str) -> None:
        self.errors[kind] += 1
        self.last_error = message

    @_locked
    def calibration(self, camera, problem: str | None) -> None:
        """``problem``: why the camera has no extrinsics (None: it has them now)."""
        if problem is None:
            self.uncalibrated.pop(camera, None)
        else:
            self.uncalibrated[camera] = problem

    @_locked
    def stream_reset(self, camera, reason: str) -> None:
        self.reset_stamps()
        self.resets += 1
        self.last_reset_reason = reason
        self.problem(camera, "stamp_backwards", reason)

    @_locked
    def received(self, camera) -> None:
        """An image arrived (counted whatever its fate)."""
        health = self.cameras[camera]
        health.received += 1
        health.last_arrival = self._clock()
        health.arrivals.append(health.last_arrival)
        health.others_received = {name: other.received for name, other in self.cameras.items() if name != camera}

    @_locked
    def stamped(self, camera, stamp_ns: int) -> None:
        """An image with a new stamp arrived: the evidence the dropout rule reads."""
        health = self.cameras[camera]
        if self.first_stamp is None:
            self.first_stamp = stamp_ns
        if health.newest_stamp is None or stamp_ns > health.newest_stamp:
            health.newest_stamp = stamp_ns
            health.stamps.append(stamp_ns)
        if health.missing:
            health.recoveries += 1
        health.missing = False

    @_locked
    def reset_stamps(self) -> None:
        """Forget the stamps seen (the stream jumped back in time: a looped bag), keeping the counters."""
        self.first_stamp = None
        for health in self.cameras.values():
            health.newest_stamp = None
            health.stamps.clear()

    @_locked
    def problem(self, camera, kind: str, message: str) -> None:
        health = self.cameras.get(camera)
        if health is None:
            self.errors[kind] += 1
            self.last_error = message
            return
        health.problems[kind] += 1
        health.last_problem = f"{kind}: {message}"
        health.last_problem_time = self._clock()

    @_locked
    def silent_cameras(self, timeout: float, slop: float = 0.0) -> list:
        """Cameras the data shows missing: the other cameras' images have moved on by more than ``timeout``
        seconds of *stamp* time past this camera's newest image (a camera never heard counts from the first stamp
        seen), with at least two newer images of another camera (newer by more than the synchroniser's ``slop``:
        an image of the same set does not count), and with at least two images of another camera delivered to the
        node since this camera's last one: sets keep completing without it.

        Stamps, not arrival times: an image that arrives late because the node (or the network) was busy still
        carries its own time, so a healthy camera is never declared missing for the node's own delays; and when
        every camera is silent the stream is idle (a paused bag), not a dropout: none is listed. Deliveries, not
        stamps alone: a node that falls behind takes one queued image per camera in turn, so a camera whose queue
        is a few images behind the others' keeps delivering between theirs and is not missing, while a camera that
        stopped delivers nothing while the others go on."""
        if self.first_stamp is None:
            return []
        limit, same_set = int(round(timeout * 1e9)), int(round(slop * 1e9))
        newest = max(h.newest_stamp for h in self.cameras.values() if h.newest_stamp is not None)
        silent = []
        for camera, health in self.cameras.items():
            own = health.newest_stamp if health.newest_stamp is not None else self.first_stamp
            sets_went_on = any(len(other.stamps) == 2 and other.stamps[0] > own + same_set
                               for name, other in self.cameras.items() if name != camera)
            delivered_without_it = max((other.received - health.others_received.get(name, 0)
                                        for name, other in self.cameras.items() if name != camera), default=0)
            missing = newest - own > limit and sets_went_on and delivered_without_it >= 2
            if missing and not health.missing:
                health.dropouts += 1
            health.missing = missing
            if missing:
                silent.append(camera)
        return silent

    @_locked
    def stamp_lags(self, cameras) -> dict:
        """Seconds of stamp time each camera's newest image is behind the newest image of any camera."""
        stamps = [h.newest_stamp for h in self.cameras.values() if h.newest_stamp is not None]
        if not stamps:
            return {}
        newest = max(stamps)
        return {c: (newest - (self.cameras[c].newest_stamp if self.cameras[c].newest_stamp is not None
                              else self.first_stamp)) * 1e-9 for c in cameras}

    @_locked
    def statuses(self) -> list[Status]:
        """The diagnostics entries (under the lock: the worker's updates wait until they are built)."""
        now = self._clock()
        prefix = f"{self.node_name}: "
        out = []
        processing_ms, latency_ms, errors = self.processing_ms, self.latency_ms, self.errors
        processing = sum(processing_ms) / len(processing_ms) if processing_ms else float("nan")
        latency = sum(latency_ms) / len(latency_ms) if latency_ms else float("nan")
        model_level = OK if self.model.get("ready") else WARN
        message = "ready" if self.model.get("ready") else "loading"
        if errors:
            model_level, message = WARN, f"inference errors: {self.last_error}"
        out.append(Status(prefix + "inference", model_level, message, {
            **{key: str(value) for key, value in dict(self.model).items()},
            "inferences": str(self.inferences),
            "sets_dropped_newer_arrived": str(self.sets_dropped),
            "sets_rejected_bad_input": str(self.sets_rejected),
            "skipped_no_subscribers": str(self.skipped_no_subscribers),
            "processing_time_ms_mean": f"{processing:.1f}",
            "pipeline_latency_ms_mean": f"{latency:.1f}",
            "query": self.query_state,
            **{f"errors_{kind}": str(count) for kind, count in errors.items()},
        }))
        missing = [camera for camera, health in self.cameras.items() if health.missing]
        sync_level = ERROR if len(missing) == len(self.cameras) else WARN if missing else OK
        sync_message = ("no camera delivers images" if sync_level == ERROR else
                        f"inferring without {', '.join(missing)}" if missing else "all cameras synchronised")
        out.append(Status(prefix + "synchronizer", sync_level, sync_message, {
            "missing_cameras": ",".join(missing), "resets": str(self.resets),
            "last_reset": self.last_reset_reason}))
        for camera, health in self.cameras.items():
            recent = health.last_problem_time is not None and now - health.last_problem_time < self.recent
            if camera in self.uncalibrated:
                level, message = ERROR, f"no extrinsics: {self.uncalibrated[camera]}"
            elif health.missing:
                level, message = WARN, ("missing (the other cameras' images are more than camera_timeout ahead of "
                                        "its newest): left out of the set")
            elif recent:
                level, message = WARN, health.last_problem
            else:
                level, message = OK, "ok"
            age = "never" if health.last_arrival is None else f"{now - health.last_arrival:.2f}"
            out.append(Status(prefix + f"input {camera}", level, message, {
                "received": str(health.received), "seconds_since_last": age,
                "dropouts": str(health.dropouts), "recoveries": str(health.recoveries),
                "last_problem": health.last_problem,
                **{f"dropped_{kind}": str(count) for kind, count in sorted(dict(health.problems).items())}}))
        return out


def to_diagnostic_array(statuses: list[Status], stamp, hardware_id: str):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    array = DiagnosticArray()
    array.header.stamp = stamp
    for status in statuses:
        array.status.append(DiagnosticStatus(
            level=bytes([status.level]), name=status.name, message=status.message, hardware_id=hardware_id,
            values=[KeyValue(key=key, value=value) for key, value in status.values.items()]))
    return array
