"""nuScenes -> ROS 2 bag (MCAP with zstd chunks, or sqlite3), written with ``rosbags``: no ROS install needed.

Layout of the bag (see docs/bags.md):
  /<CAM>/image/compressed  sensor_msgs/CompressedImage  the original JPEG bytes, frame_id = channel name
  /<CAM>/camera_info       sensor_msgs/CameraInfo       same header as the image
  /LIDAR_TOP/points        sensor_msgs/PointCloud2      x, y, z, intensity, ring (float32), frame LIDAR_TOP
  /tf                      tf2_msgs/TFMessage           map->base_link and base_link->sensor at every sample_data
  /tf_static               tf2_msgs/TFMessage           base_link->every sensor, offered transient local
and ``calibration.yaml`` (a rig file, ``distillnerf.rig``) inside the bag folder, for nodes without TF.

The bag is written into ``<out>.partial/<name>`` and renamed on success, so a crash never leaves a bag that looks valid.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from distillnerf.rig import save_rig

from . import messages
from .nuscenes_source import DatasetError, SensorRecord, open_nuscenes, rig_of, scene_records, select_scenes

LOG = logging.getLogger(__name__)

MAP_FRAME = "map"
BASE_FRAME = "base_link"
CALIBRATION_FILE = "calibration.yaml"
STORAGES = ("mcap", "sqlite3")
_INFINITE = (9223372036, 854775807)  # rosbag2's spelling of an infinite QoS duration


def image_topic(channel: str) -> str:
    return f"/{channel}/image/compressed"


def camera_info_topic(channel: str) -> str:
    return f"/{channel}/camera_info"


def lidar_topic(channel: str) -> str:
    return f"/{channel}/points"


def calibration_path(bag: str | os.PathLike) -> Path:
    """Where the converter puts the rig file of a bag: inside the bag folder."""
    return Path(bag) / CALIBRATION_FILE


@dataclass
class BagSummary:
    path: Path
    storage: str
    scenes: list[str]
    samples: int  # keyframes (nuScenes samples)
    messages: dict[str, int] = field(default_factory=dict)  # per topic
    start_us: int = 0
    end_us: int = 0
    seconds: float = 0.0  # in all
    write_seconds: float = 0.0  # reading the files and writing the bag, without loading the devkit and tables

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.write_seconds if self.write_seconds > 0 else float("inf")

    def describe(self) -> str:
        total = sum(self.messages.values())
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file()) / 1e6
        return (f"wrote {self.path} ({self.storage}, {size:.1f} MB): {len(self.scenes)} scene(s), {self.samples} "
                f"samples, {total} messages over {(self.end_us - self.start_us) / 1e6:.2f} s of recording, in "
                f"{self.seconds:.1f} s ({self.samples_per_second:.2f} samples/s written after "
                f"{self.seconds - self.write_seconds:.1f} s loading the devkit and tables)")


def _qos(transient_local: bool, depth: int):
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    infinite = QosTime(*_INFINITE)
    return Qos(history=QosHistory.KEEP_LAST, depth=depth, reliability=QosReliability.RELIABLE,
               durability=QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
               deadline=infinite, lifespan=infinite, liveliness=QosLiveliness.AUTOMATIC,
               liveliness_lease_duration=infinite, avoid_ros_namespace_conventions=False)


class _Connections:
    """Lazily adds one connection per topic, with its message type and offered QoS."""

    def __init__(self, writer):
        self.writer = writer
        self.by_topic: dict[str, object] = {}
        self.counts: dict[str, int] = {}

    def write(self, topic: str, timestamp_us: int, message, transient_local: bool = False) -> None:
        if topic not in self.by_topic:
            self.by_topic[topic] = self.writer.add_connection(
                topic, message.__msgtype__, typestore=messages.typestore(),
                offered_qos_profiles=[_qos(transient_local, depth=1 if transient_local else 10)])
            self.counts[topic] = 0
        self.writer.write(self.by_topic[topic], int(timestamp_us) * 1000, messages.serialize(message))
        self.counts[topic] += 1


def _static_transforms(records: list[SensorRecord]) -> list:
    first: dict[str, SensorRecord] = {}
    for record in records:
        first.setdefault(record.channel, record)
    start = records[0].timestamp_us
    return [messages.transform(start, BASE_FRAME, r.channel, r.sensor_translation, r.sensor_rotation_wxyz)
            for r in first.values()]


def _write_record(out: _Connections, record: SensorRecord) -> None:
    t = record.timestamp_us
    out.write("/tf", t, messages.tf_message([
        messages.transform(t, MAP_FRAME, BASE_FRAME, record.ego_translation, record.ego_rotation_wxyz),
        messages.transform(t, BASE_FRAME, record.channel, record.sensor_translation, record.sensor_rotation_wxyz),
    ]))
    data = record.path.read_bytes()
    if record.modality == "camera":
        out.write(camera_info_topic(record.channel), t,
                  messages.camera_info(t, record.channel, record.width, record.height, record.intrinsics))
        out.write(image_topic(record.channel), t, messages.compressed_image(t, record.channel, data))
    else:
        out.write(lidar_topic(record.channel), t, messages.lidar_points(t, record.channel, data))


def write_nuscenes_bag(dataroot: str | os.PathLike, version: str, out: str | os.PathLike,
                       scenes: list[str] | None = None, storage: str = "mcap", sweeps: bool = True,
                       overwrite: bool = False, progress: bool = True) -> BagSummary:
    """Convert scenes of a nuScenes dataroot into one ROS 2 bag folder ``out``; raise ``DatasetError`` on bad input."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode
    from tqdm import tqdm

    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists already (pass --overwrite to replace it)")
    started = time.perf_counter()
    nusc = open_nuscenes(dataroot, version)
    chosen = select_scenes(nusc, scenes)
    per_scene = [(scene["name"], scene_records(nusc, scene, sweeps)) for scene in chosen]
    empty = [name for name, records in per_scene if not records]
    if empty:
        raise DatasetError(f"scene(s) without camera or LiDAR data: {', '.join(empty)}")

    staging = out.with_name(out.name + ".partial")
    if staging.exists():  # left over by a crashed run of ours
        shutil.rmtree(staging)
    writing = time.perf_counter()
    partial = staging / out.name  # rosbags names the storage file after the folder: keep the final name
    writer = Writer(partial, version=9, storage_plugin=StoragePlugin[storage.upper()])
    if storage == "mcap":
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    summary = BagSummary(path=out, storage=storage, scenes=[name for name, _ in per_scene], samples=0)
    total = sum(len(records) for _, records in per_scene)
    try:
        writer.open()
        connections = _Connections(writer)
        with tqdm(total=total, unit="sample_data", desc=f"nuscenes2bag {out.name}", disable=not progress) as bar:
            for _, records in per_scene:
                connections.write("/tf_static", records[0].timestamp_us,
                                  messages.tf_message(_static_transforms(records)), transient_local=True)
                for record in records:
                    _write_record(connections, record)
                    bar.update(1)
                summary.samples += len({r.sample_token for r in records if r.is_key_frame})
        for key, value in (("converter", "distillnerf nuscenes2bag"), ("dataroot", str(Path(dataroot).resolve())),
                           ("version", version), ("scenes", ",".join(summary.scenes)),
                           ("calibration", CALIBRATION_FILE)):
            writer.set_custom_data(key, value)
        writer.close()
        first_name, first_records = per_scene[0]
        save_rig(rig_of(first_records, first_name, f"nuScenes {version} scene {first_name} in {dataroot}"),
                 calibration_path(partial))
        if len(per_scene) > 1:
            LOG.warning("%s holds the calibration of %s; the other scenes' extrinsics are on /tf",
                        CALIBRATION_FILE, first_name)
        if out.exists():
            shutil.rmtree(out)
        os.replace(partial, out)
        staging.rmdir()
    except BaseException:
        if writer.storage is not None:
            writer.abort()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary.messages = dict(connections.counts)
    summary.start_us = min(records[0].timestamp_us for _, records in per_scene)
    summary.end_us = max(records[-1].timestamp_us for _, records in per_scene)
    summary.seconds = time.perf_counter() - started
    summary.write_seconds = time.perf_counter() - writing
    return summary
