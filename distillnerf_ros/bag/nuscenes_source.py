"""Read a nuScenes dataroot (real, tiny or the synthetic world) into plain per-sensor records for the bag writer.

The official devkit does the loading, so anything the devkit accepts converts; this module only walks each
scene's ``sample_data`` chains and resolves poses and calibration, keeping the devkit out of the writer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distillnerf.rig import NUSCENES_CAMERAS, CameraCalibration, Rig, SensorExtrinsics


class DatasetError(RuntimeError):
    """The dataroot, version or scene cannot be converted (message says what and where)."""


@dataclass(frozen=True)
class SensorRecord:
    """One ``sample_data`` entry with everything the bag needs, resolved from the devkit tables."""

    token: str
    sample_token: str  # the keyframe this record belongs to (sweeps: the next keyframe)
    channel: str
    modality: str  # 'camera' | 'lidar' | 'radar'
    timestamp_us: int
    is_key_frame: bool
    path: Path  # the file on disk
    width: int
    height: int
    intrinsics: np.ndarray | None  # 3x3 for cameras
    sensor_translation: np.ndarray  # sensor -> ego (base_link)
    sensor_rotation_wxyz: np.ndarray
    ego_translation: np.ndarray  # ego (base_link) -> map at this timestamp
    ego_rotation_wxyz: np.ndarray


def open_nuscenes(dataroot: str | Path, version: str):
    """Load the devkit, turning its asserts and JSON errors into one clear ``DatasetError``."""
    root = Path(dataroot)
    if not root.is_dir():
        raise DatasetError(f"nuScenes dataroot {root} does not exist or is not a folder")
    tables = root / version
    if not tables.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("v1.0"))
        raise DatasetError(f"no table folder {tables} (versions found in {root}: {', '.join(found) or 'none'})")
    from nuscenes.nuscenes import NuScenes  # import-light module: the devkit pulls in matplotlib and cv2

    try:
        return NuScenes(version=version, dataroot=str(root), verbose=False)
    except json.JSONDecodeError as error:
        raise DatasetError(f"corrupt nuScenes table in {tables}: {error}") from error
    except (AssertionError, KeyError, FileNotFoundError, TypeError) as error:
        raise DatasetError(f"cannot load nuScenes {version} from {root}: {type(error).__name__}: {error}") from error


def select_scenes(nusc, names: list[str] | None) -> list[dict]:
    """The requested scenes (all when ``names`` is empty), ordered by start time so the bag is time-ordered."""
    by_name = {scene["name"]: scene for scene in nusc.scene}
    if names:
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise DatasetError(f"unknown scene(s) {', '.join(unknown)}; available: {', '.join(sorted(by_name))}")
        scenes = [by_name[n] for n in dict.fromkeys(names)]
    else:
        scenes = list(nusc.scene)
    if not scenes:
        raise DatasetError("the dataset has no scenes")
    return sorted(scenes, key=lambda s: nusc.get("sample", s["first_sample_token"])["timestamp"])


def _channel_chain(nusc, scene: dict, first_token: str) -> list[dict]:
    """Every sample_data of one channel inside ``scene``, in time order (sweeps before the first keyframe too)."""

    def in_scene(sd: dict) -> bool:
        return nusc.get("sample", sd["sample_token"])["scene_token"] == scene["token"]

    chain = []
    record = nusc.get("sample_data", first_token)
    while record["prev"]:
        previous = nusc.get("sample_data", record["prev"])
        if not in_scene(previous):
            break
        record = previous
    while True:
        chain.append(record)
        if not record["next"]:
            break
        record = nusc.get("sample_data", record["next"])
        if not in_scene(record):
            break
    return chain


def scene_records(nusc, scene: dict, sweeps: bool = True) -> list[SensorRecord]:
    """All camera and LiDAR records of a scene, sorted by timestamp (radar is not converted)."""
    first_sample = nusc.get("sample", scene["first_sample_token"])
    records = []
    for channel, token in sorted(first_sample["data"].items()):
        sensor_modality = nusc.get("sensor", nusc.get("calibrated_sensor", nusc.get("sample_data", token)[
            "calibrated_sensor_token"])["sensor_token"])["modality"]
        if sensor_modality not in ("camera", "lidar"):
            continue
        for sd in _channel_chain(nusc, scene, token):
            if not sweeps and not sd["is_key_frame"]:
                continue
            records.append(_record(nusc, sd, channel, sensor_modality))
    records.sort(key=lambda r: (r.timestamp_us, r.channel))
    return records


def _record(nusc, sd: dict, channel: str, modality: str) -> SensorRecord:
    calib = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    ego = nusc.get("ego_pose", sd["ego_pose_token"])
    path = Path(nusc.dataroot) / sd["filename"]
    if not path.is_file():
        raise DatasetError(f"{channel} sample_data {sd['token']}: file {path} is missing")
    intrinsics = None
    width, height = int(sd.get("width") or 0), int(sd.get("height") or 0)
    if modality == "camera":
        intrinsics = np.asarray(calib["camera_intrinsic"], dtype=np.float64).reshape(3, 3)
        if width <= 0 or height <= 0:
            width, height = _jpeg_size(path)
    return SensorRecord(
        token=sd["token"], sample_token=sd["sample_token"], channel=channel, modality=modality,
        timestamp_us=int(sd["timestamp"]), is_key_frame=bool(sd["is_key_frame"]), path=path, width=width,
        height=height, intrinsics=intrinsics,
        sensor_translation=np.asarray(calib["translation"], dtype=np.float64),
        sensor_rotation_wxyz=np.asarray(calib["rotation"], dtype=np.float64),
        ego_translation=np.asarray(ego["translation"], dtype=np.float64),
        ego_rotation_wxyz=np.asarray(ego["rotation"], dtype=np.float64),
    )


def _jpeg_size(path: Path) -> tuple[int, int]:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DatasetError(f"cannot decode image {path}")
    return int(image.shape[1]), int(image.shape[0])


def rig_of(records: list[SensorRecord], scene_name: str, source: str) -> Rig:
    """The scene's calibration as a rig file (first record per channel), cameras in the model's order."""
    first: dict[str, SensorRecord] = {}
    for record in records:
        first.setdefault(record.channel, record)
    cameras = [r for r in first.values() if r.modality == "camera"]
    order = {name: i for i, name in enumerate(NUSCENES_CAMERAS)}
    cameras.sort(key=lambda r: (order.get(r.channel, len(order)), r.channel))
    lidar = next((r for r in first.values() if r.modality == "lidar"), None)
    return Rig(
        name=f"bag:{scene_name}",
        cameras=tuple(CameraCalibration(r.channel, r.width, r.height, r.intrinsics, r.sensor_translation,
                                        r.sensor_rotation_wxyz) for r in cameras),
        lidar=None if lidar is None else SensorExtrinsics(lidar.channel, lidar.sensor_translation,
                                                          lidar.sensor_rotation_wxyz),
        frame_id="base_link",
        source=source,
    )
