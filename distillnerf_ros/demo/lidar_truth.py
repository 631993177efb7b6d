"""Depth ground truth for real frames: the keyframe's LiDAR sweep projected into each replayed camera image.

nuScenes dataroots without the synthetic world's exact answers still have LiDAR; the demo scores the node's depth
against it the way ``distillnerf eval`` does (camera z, 1-80 m, nearest return per pixel), so a real frame gets a
figure too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distillnerf.lidar import load_lidar_points, project_depth
from distillnerf.rig import pose_matrix

LIDAR_CHANNEL = "LIDAR_TOP"
#: The range the paper and ``distillnerf eval`` score LiDAR depth in.
LIDAR_RANGE = (1.0, 80.0)


@dataclass
class LidarTruth:
    """For (camera channel, image stamp in us): the camera's calibration and its keyframe's LiDAR in its frame."""

    root: Path
    nusc: object
    sample_data: dict[tuple[str, int], str]  # (channel, stamp_us) -> camera sample_data token

    @classmethod
    def open(cls, dataroot: Path, version: str) -> "LidarTruth | None":
        """The index of a dataroot whose keyframes carry LiDAR, or None when none does."""
        from distillnerf_ros.bag.nuscenes_source import open_nuscenes

        nusc = open_nuscenes(dataroot, version)
        if not any(LIDAR_CHANNEL in sample["data"] for sample in nusc.sample):
            return None
        index = {(sd["channel"], int(sd["timestamp"])): sd["token"] for sd in nusc.sample_data
                 if sd["channel"].startswith("CAM")}
        return cls(Path(dataroot), nusc, index)

    def _pose(self, record: dict, table: str, token_key: str) -> np.ndarray:
        entry = self.nusc.get(table, record[token_key])
        return pose_matrix(entry["translation"], entry["rotation"])

    def depth(self, channel: str, stamp_us: int, shape: tuple[int, int]) -> np.ndarray | None:
        """Sparse camera-z depth [h, w] (0 = no return) at the prediction's size, or None without LiDAR."""
        token = self.sample_data.get((channel, stamp_us))
        if token is None:
            return None
        camera = self.nusc.get("sample_data", token)
        sample = self.nusc.get("sample", camera["sample_token"])
        if LIDAR_CHANNEL not in sample["data"]:
            return None
        lidar = self.nusc.get("sample_data", sample["data"][LIDAR_CHANNEL])
        calib = self.nusc.get("calibrated_sensor", camera["calibrated_sensor_token"])
        return lidar_depth_image(
            load_lidar_points(self.root / lidar["filename"]),
            self._pose(lidar, "calibrated_sensor", "calibrated_sensor_token"),
            self._pose(lidar, "ego_pose", "ego_pose_token"), self._pose(camera, "ego_pose", "ego_pose_token"),
            self._pose(camera, "calibrated_sensor", "calibrated_sensor_token"), calib["camera_intrinsic"],
            (camera["width"], camera["height"]), shape)


def lidar_depth_image(points_lidar: np.ndarray, lidar_to_ego: np.ndarray, ego_to_world_at_lidar: np.ndarray,
                      ego_to_world_at_camera: np.ndarray, cam_to_ego: np.ndarray, intrinsics,
                      image_size: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """One LiDAR sweep as sparse camera-z depth [h, w] of ``shape`` (0 = no return, ``LIDAR_RANGE`` only).

    The points go to the ego frame at the LiDAR's time; the camera is placed in that frame with the ego pose at
    the camera's own time (it fires some 20-50 ms apart). ``intrinsics`` are for ``image_size`` (W, H) and are
    scaled to ``shape``. Shared by the dataroot (``LidarTruth``) and the bag (``BagLidarTruth``) look-ups.
    """
    points_ego = points_lidar @ lidar_to_ego[:3, :3].T + lidar_to_ego[:3, 3]
    cam_to_lidar_ego = np.linalg.inv(ego_to_world_at_lidar) @ ego_to_world_at_camera @ cam_to_ego
    h, w = shape
    scale = np.diag([w / image_size[0], h / image_size[1], 1.0])
    intrinsics = scale @ np.asarray(intrinsics, dtype=np.float64).reshape(3, 3)
    return project_depth(points_ego, cam_to_lidar_ego, intrinsics, (w, h), *LIDAR_RANGE)
