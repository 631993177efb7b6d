"""Sensor rigs: camera intrinsics and camera-to-ego extrinsics, read from and written to rig files.

A rig file (YAML, in ``distillnerf/configs/rigs/``) is the one calibration format of the project: the synthetic
world renders with it, the node reads it where TF is unavailable, and the bag converter writes one beside each bag.

Conventions: camera frames are optical (x right, y down, z forward, as nuScenes); ``translation`` and
``rotation_wxyz`` map sensor coordinates to the ego frame (``base_link``), as nuScenes ``calibrated_sensor``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from distillnerf.config_files import load_yaml, resolve_config

#: The model's camera order (the official code's), and the default ``camera_names`` of the node.
NUSCENES_CAMERAS = (
    "CAM_FRONT_LEFT",
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_BACK_RIGHT",
    "CAM_BACK",
    "CAM_BACK_LEFT",
)


def quaternion_to_matrix(wxyz) -> np.ndarray:
    """Rotation matrix of a (w, x, y, z) quaternion; the quaternion need not be normalised."""
    w, x, y, z = np.asarray(wxyz, dtype=np.float64) / np.linalg.norm(wxyz)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(rotation) -> np.ndarray:
    """(w, x, y, z) quaternion with w >= 0 of a rotation matrix."""
    m = np.asarray(rotation, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, 0.0]
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q = np.asarray(q)
    return q if q[0] >= 0 else -q


def pose_matrix(translation, rotation_wxyz) -> np.ndarray:
    """4x4 homogeneous transform from a translation and a (w, x, y, z) quaternion."""
    pose = np.eye(4)
    pose[:3, :3] = quaternion_to_matrix(rotation_wxyz)
    pose[:3, 3] = np.asarray(translation, dtype=np.float64)
    return pose


@dataclass(frozen=True)
class CameraCalibration:
    name: str
    width: int
    height: int
    intrinsics: np.ndarray  # 3x3 pixel intrinsics at width x height
    translation: np.ndarray  # camera origin in the ego frame, metres
    rotation_wxyz: np.ndarray  # camera-to-ego rotation

    @property
    def cam_to_ego(self) -> np.ndarray:
        return pose_matrix(self.translation, self.rotation_wxyz)

    def resized(self, width: int, height: int) -> "CameraCalibration":
        """The same camera with its image resampled to ``width`` x ``height`` (pixel-edge convention)."""
        scale = np.diag([width / self.width, height / self.height, 1.0])
        return CameraCalibration(self.name, width, height, scale @ self.intrinsics, self.translation,
                                 self.rotation_wxyz)


@dataclass(frozen=True)
class SensorExtrinsics:
    name: str
    translation: np.ndarray
    rotation_wxyz: np.ndarray

    @property
    def sensor_to_ego(self) -> np.ndarray:
        return pose_matrix(self.translation, self.rotation_wxyz)


@dataclass(frozen=True)
class Rig:
    name: str
    cameras: tuple[CameraCalibration, ...]
    lidar: SensorExtrinsics | None = None
    frame_id: str = "base_link"
    source: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    def camera(self, name: str) -> CameraCalibration:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(f"rig {self.name!r} has no camera {name!r} (it has {', '.join(self.camera_names)})")

    def resized(self, width: int, height: int) -> "Rig":
        return Rig(self.name, tuple(c.resized(width, height) for c in self.cameras), self.lidar, self.frame_id,
                   self.source, self.extra)

    def to_dict(self) -> dict:
        data = {"name": self.name, "source": self.source, "frame_id": self.frame_id, "cameras": []}
        for cam in self.cameras:
            data["cameras"].append({
                "name": cam.name,
                "width": int(cam.width),
                "height": int(cam.height),
                "K": [float(v) for v in np.asarray(cam.intrinsics).reshape(-1)],
                "translation": [float(v) for v in cam.translation],
                "rotation_wxyz": [float(v) for v in cam.rotation_wxyz],
            })
        if self.lidar is not None:
            data["lidar"] = {
                "name": self.lidar.name,
                "translation": [float(v) for v in self.lidar.translation],
                "rotation_wxyz": [float(v) for v in self.lidar.rotation_wxyz],
            }
        data.update(self.extra)
        return data


def rig_from_dict(data: dict, origin: str = "<dict>") -> Rig:
    """Build and validate a rig; errors name the file and the offending camera."""
    try:
        cameras = []
        for entry in data["cameras"]:
            intrinsics = np.asarray(entry["K"], dtype=np.float64).reshape(3, 3)
            width, height = int(entry["width"]), int(entry["height"])
            if width <= 0 or height <= 0:
                raise ValueError(f"camera {entry['name']}: image size must be positive, got {width}x{height}")
            if not np.all(np.isfinite(intrinsics)) or intrinsics[0, 0] <= 0 or intrinsics[1, 1] <= 0:
                raise ValueError(f"camera {entry['name']}: focal lengths must be finite and positive")
            cameras.append(CameraCalibration(
                str(entry["name"]), width, height, intrinsics,
                np.asarray(entry["translation"], dtype=np.float64).reshape(3),
                np.asarray(entry["rotation_wxyz"], dtype=np.float64).reshape(4),
            ))
        lidar = None
        if data.get("lidar"):
            lidar = SensorExtrinsics(str(data["lidar"]["name"]),
                                     np.asarray(data["lidar"]["translation"], dtype=np.float64).reshape(3),
                                     np.asarray(data["lidar"]["rotation_wxyz"], dtype=np.float64).reshape(4))
        known = {"name", "source", "frame_id", "cameras", "lidar"}
        return Rig(str(data.get("name", Path(origin).stem)), tuple(cameras), lidar,
                   str(data.get("frame_id", "base_link")), str(data.get("source", "")),
                   {k: v for k, v in data.items() if k not in known})
    except (KeyError, TypeError) as error:
        raise ValueError(f"{origin}: not a valid rig file ({type(error).__name__}: {error})") from error
    except ValueError as error:
        raise ValueError(f"{origin}: {error}") from error


def load_rig(name_or_path: str | os.PathLike = "nuscenes") -> Rig:
    """Load a rig by file path or by name in ``distillnerf/configs/rigs/`` (``nuscenes``, ``ddad``)."""
    file = resolve_config(name_or_path, "rigs")
    return rig_from_dict(load_yaml(file), str(file))


def save_rig(rig: Rig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("# Rig file: camera intrinsics (K, row-major, pixels at width x height) and sensor-to-base_link extrinsics.\n" + yaml.safe_dump(rig.to_dict(), sort_keys=False, default_flow_style=None, width=120), encoding="utf-8")
    os.replace(tmp, path)
    return path
