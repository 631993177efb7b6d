"""Depth ground truth for a user's bag: its LiDAR sweeps projected into its camera images, placed by its TF.

The bag twin of ``lidar_truth.LidarTruth`` for bags in the nuscenes2bag layout (``distillnerf_ros.bag.writer``):
``/<CAM>/image/compressed`` with ``/<CAM>/camera_info``, a ``sensor_msgs/PointCloud2`` LiDAR topic, ``map ->
base_link`` on ``/tf`` and ``base_link -> sensor`` on ``/tf_static`` (or ``/tf``). Each image is scored against the
sweep nearest it in time, within ``LIDAR_MAX_OFFSET_NS``, with the same projection (``lidar_depth_image``).

``open`` indexes the bag once: stamps, frames, intrinsics and transforms, no point or image data; ``depth`` reads
the one sweep it needs (and keeps the last, which the six cameras of a keyframe share).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from distillnerf.rig import pose_matrix
from distillnerf_ros.bag.writer import BASE_FRAME, MAP_FRAME, camera_info_topic, image_topic, lidar_topic
from distillnerf_ros.conversions import stamp_to_nanoseconds

from .lidar_truth import LIDAR_CHANNEL, lidar_depth_image

LOG = logging.getLogger(__name__)

#: Farthest a sweep may be from an image to score it: nuScenes cameras fire within ~50 ms of their keyframe's
#: sweep, and a 10-20 Hz LiDAR always has one within 0.1 s; farther, the scene has moved too much to be truth.
LIDAR_MAX_OFFSET_NS = 100_000_000
#: Longest gap between two samples of a moving transform that is interpolated across (nuScenes keyframes: 0.5 s).
TF_MAX_GAP_NS = 500_000_000
TF_TOPICS = ("/tf", "/tf_static")
POINT_CLOUD = "sensor_msgs/msg/PointCloud2"


@dataclass
class _Samples:
    """One parent->child transform over time: stamps (ns, sorted after ``sort``), translations, quaternions wxyz."""

    stamps: list[int] = field(default_factory=list)
    translations: list[tuple[float, float, float]] = field(default_factory=list)
    rotations: list[tuple[float, float, float, float]] = field(default_factory=list)

    def add(self, stamp_ns: int, translation, rotation_wxyz) -> None:
        self.stamps.append(stamp_ns)
        self.translations.append(translation)
        self.rotations.append(rotation_wxyz)

    def sort(self) -> None:
        order = np.argsort(self.stamps, kind="stable")
        self.stamps = [self.stamps[i] for i in order]
        self.translations = [self.translations[i] for i in order]
        self.rotations = [self.rotations[i] for i in order]

    def latest_before(self, stamp_ns: int) -> np.ndarray:
        """A static transform: the last one published at or before ``stamp_ns`` (a bag of several scenes
        publishes one per scene), else the first."""
        i = max(0, int(np.searchsorted(self.stamps, stamp_ns, side="right")) - 1)
        return pose_matrix(self.translations[i], self.rotations[i])

    def at(self, stamp_ns: int) -> np.ndarray | None:
        """A moving transform at ``stamp_ns``: exact, or interpolated between the samples around it; never
        extrapolated."""
        i = int(np.searchsorted(self.stamps, stamp_ns))
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            return pose_matrix(self.translations[i], self.rotations[i])
        if i == 0 or i == len(self.stamps) or self.stamps[i] - self.stamps[i - 1] > TF_MAX_GAP_NS:
            return None
        a = (stamp_ns - self.stamps[i - 1]) / (self.stamps[i] - self.stamps[i - 1])
        q0, q1 = np.asarray(self.rotations[i - 1]), np.asarray(self.rotations[i])
        q1 = q1 if np.dot(q0, q1) >= 0 else -q1  # the short way round
        translation = (1 - a) * np.asarray(self.translations[i - 1]) + a * np.asarray(self.translations[i])
        return pose_matrix(translation, (1 - a) * q0 + a * q1)  # normalised lerp: samples are close in time


@dataclass
class TransformTree:
    """A bag's ``/tf`` and ``/tf_static``: child frame -> parent frame, with each edge's samples."""

    parent: dict[str, str] = field(default_factory=dict)
    moving: dict[str, _Samples] = field(default_factory=dict)
    static: dict[str, _Samples] = field(default_factory=dict)

    def add(self, transform, static: bool) -> None:
        child, parent = transform.child_frame_id, transform.header.frame_id
        t, r = transform.transform.translation, transform.transform.rotation
        translation, rotation = (t.x, t.y, t.z), (r.w, r.x, r.y, r.z)
        norm = float(np.linalg.norm(rotation))
        if not (np.all(np.isfinite(translation)) and np.isfinite(norm) and norm > 1e-6):
            return  # a broken transform is no transform
        if self.parent.setdefault(child, parent) != parent:
            return  # a frame has one parent in TF; a second one is ignored
        (self.static if static else self.moving).setdefault(child, _Samples()).add(
            stamp_to_nanoseconds(transform.header.stamp), translation, rotation)

    def sort(self) -> None:
        for samples in (*self.moving.values(), *self.static.values()):
            samples.sort()

    def _edge(self, child: str, stamp_ns: int) -> np.ndarray | None:
        if child in self.static:
            return self.static[child].latest_before(stamp_ns)
        return self.moving[child].at(stamp_ns) if child in self.moving else None

    def lookup(self, frame: str, target: str, stamp_ns: int) -> np.ndarray | None:
        """``frame`` -> ``target`` (an ancestor of it) at ``stamp_ns``; None when the chain breaks there."""
        pose = None
        for _ in range(len(self.parent) + 1):  # more hops than frames: a loop
            if frame == target:
                return np.eye(4) if pose is None else pose
            edge = self._edge(frame, stamp_ns) if frame in self.parent else None
            if edge is None:
                return None
            pose = edge if pose is None else edge @ pose
            frame = self.parent[frame]
        return None


@dataclass(frozen=True)
class _Image:
    stamp_ns: int
    frame_id: str


@dataclass(frozen=True)
class _Intrinsics:
    stamp_ns: int
    k: np.ndarray  # 3x3 at width x height
    width: int
    height: int


@dataclass(frozen=True)
class _Sweep:
    stamp_ns: int  # header stamp
    log_ns: int  # where it is in the bag
    frame_id: str


@dataclass
class BagLidarTruth:
    """For (camera channel, image stamp in us): the bag's LiDAR sweep nearest that image, in its frame."""

    bag: Path
    lidar_topic: str
    images: dict[tuple[str, int], _Image]  # (channel, stamp_us) -> the image's exact stamp and frame
    intrinsics: dict[str, list[_Intrinsics]]  # channel -> its CameraInfo messages, in time order
    sweeps: list[_Sweep]  # in header-stamp order
    tf: TransformTree
    _cached: tuple[int, np.ndarray] | None = None  # (sweep index, points) of the last sweep read

    @classmethod
    def open(cls, bag: Path) -> "BagLidarTruth | None":
        """The index of a bag with a LiDAR topic, camera info and TF, or None when it lacks any of them."""
        from distillnerf_ros.bag.messages import typestore
        from distillnerf_ros.bag.replay import BagError, open_bag

        try:
            reader = open_bag(bag)
        except BagError:  # not a bag: the demo says so when it reads the cameras
            return None
        try:
            clouds = sorted({c.topic for c in reader.connections if c.msgtype == POINT_CLOUD})
            if not clouds:
                return None
            topic = lidar_topic(LIDAR_CHANNEL) if lidar_topic(LIDAR_CHANNEL) in clouds else clouds[0]
            channels = {}  # topic -> (channel, kind)
            for connection in reader.connections:
                channel = connection.topic.split("/")[1] if connection.topic.count("/") >= 2 else ""
                if connection.topic == image_topic(channel):
                    channels[connection.topic] = (channel, "image")
                elif connection.topic == camera_info_topic(channel):
                    channels[connection.topic] = (channel, "info")
            wanted = [c for c in reader.connections if c.topic in (topic, *TF_TOPICS, *channels)]
            truth = cls(Path(bag), topic, {}, {}, [], TransformTree())
            for connection, log_ns, raw in reader.messages(connections=wanted):
                message = typestore().deserialize_cdr(raw, connection.msgtype)
                truth._index(connection.topic, channels.get(connection.topic), log_ns, message)
        except Exception as error:  # rosbags' reader and deserialiser errors: a bag we cannot index scores nothing
            LOG.warning("no LiDAR depth truth from %s: %s: %s", bag, type(error).__name__, error)
            return None
        finally:
            reader.close()
        truth.sweeps.sort(key=lambda s: s.stamp_ns)
        for infos in truth.intrinsics.values():
            infos.sort(key=lambda i: i.stamp_ns)
        truth.tf.sort()
        if not truth.sweeps or not truth.intrinsics or not truth.tf.parent:
            return None
        return truth

    def _index(self, topic: str, camera: tuple[str, str] | None, log_ns: int, message) -> None:
        if topic in TF_TOPICS:
            for transform in message.transforms:
                self.tf.add(transform, static=topic == "/tf_static")
        elif topic == self.lidar_topic:
            self.sweeps.append(_Sweep(stamp_to_nanoseconds(message.header.stamp), log_ns, message.header.frame_id))
        elif camera is not None and camera[1] == "image":
            stamp = stamp_to_nanoseconds(message.header.stamp)
            self.images[(camera[0], stamp // 1000)] = _Image(stamp, message.header.frame_id)
        elif camera is not None and message.width > 0 and message.height > 0:
            self.intrinsics.setdefault(camera[0], []).append(_Intrinsics(
                stamp_to_nanoseconds(message.header.stamp), np.asarray(message.k, dtype=np.float64).reshape(3, 3),
                int(message.width), int(message.height)))

    # stamps for the searches, taken once: ``open`` sorts the index and nothing changes it afterwards
    @cached_property
    def _sweep_stamps(self) -> np.ndarray:
        return np.array([s.stamp_ns for s in self.sweeps], dtype=np.int64)

    @cached_property
    def _info_stamps(self) -> dict[str, np.ndarray]:
        return {channel: np.array([i.stamp_ns for i in infos], dtype=np.int64)
                for channel, infos in self.intrinsics.items()}

    def _camera_info(self, channel: str, stamp_ns: int) -> _Intrinsics | None:
        """The channel's CameraInfo at the image's stamp, else the last before it, else the first."""
        infos = self.intrinsics.get(channel)
        if not infos:
            return None
        i = int(np.searchsorted(self._info_stamps[channel], stamp_ns, side="right"))
        return infos[max(0, i - 1)]

    def _nearest_sweep(self, stamp_ns: int) -> int | None:
        stamps = self._sweep_stamps
        i = int(np.searchsorted(stamps, stamp_ns))
        near = min((j for j in (i - 1, i) if 0 <= j < len(stamps)), key=lambda j: abs(stamps[j] - stamp_ns))
        return near if abs(stamps[near] - stamp_ns) <= LIDAR_MAX_OFFSET_NS else None

    def _points(self, index: int) -> np.ndarray | None:
        """x, y, z [M, 3] float64 of one sweep in the LiDAR frame (non-finite returns dropped)."""
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        from distillnerf_ros.bag.messages import typestore
        from distillnerf_ros.bag.replay import open_bag
        from distillnerf_ros.output_messages import point_cloud_to_array

        sweep = self.sweeps[index]
        reader = open_bag(self.bag)
        try:
            connections = [c for c in reader.connections if c.topic == self.lidar_topic]
            for connection, _, raw in reader.messages(connections=connections, start=sweep.log_ns,
                                                       stop=sweep.log_ns + 1):
                message = typestore().deserialize_cdr(raw, connection.msgtype)
                if stamp_to_nanoseconds(message.header.stamp) == sweep.stamp_ns:
                    cloud = point_cloud_to_array(message)
                    points = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1).astype(np.float64)
                    points = points[np.isfinite(points).all(axis=1)]
                    self._cached = (index, points)
                    return points
        finally:
            reader.close()
        return None

    def depth(self, channel: str, stamp_us: int, shape: tuple[int, int]) -> np.ndarray | None:
        """Sparse camera-z depth [h, w] (0 = no return) at the prediction's size, or None when the bag cannot say
        (an image it does not hold, no sweep within ``LIDAR_MAX_OFFSET_NS``, no camera info, a broken TF chain)."""
        image = self.images.get((channel, stamp_us))
        if image is None:
            return None
        camera_frame = image.frame_id or channel  # nuscenes2bag: the channel
        info = self._camera_info(channel, image.stamp_ns)
        index = self._nearest_sweep(image.stamp_ns)
        if info is None or index is None:
            return None
        sweep = self.sweeps[index]
        poses = (self.tf.lookup(sweep.frame_id, BASE_FRAME, sweep.stamp_ns),
                 self.tf.lookup(BASE_FRAME, MAP_FRAME, sweep.stamp_ns),
                 self.tf.lookup(BASE_FRAME, MAP_FRAME, image.stamp_ns),
                 self.tf.lookup(camera_frame, BASE_FRAME, image.stamp_ns))
        if any(pose is None for pose in poses):
            return None
        try:
            points = self._points(index)
        except (KeyError, ValueError) as error:  # a cloud without x, y, z float fields, or truncated data
            LOG.warning("LiDAR sweep at %d ns in %s unreadable: %s", sweep.stamp_ns, self.bag, error)
            return None
        if points is None:
            return None
        return lidar_depth_image(points, *poses, info.k, (info.width, info.height), shape)
