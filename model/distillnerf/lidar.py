"""LiDAR points as depth ground truth: read a nuScenes sweep and project it into a camera as a sparse depth image.

Shared by the training targets and by the ROS package's scoring of real frames, so both score depth the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load_lidar_points(path: str | Path) -> np.ndarray:
    """A nuScenes ``.pcd.bin`` sweep: float32 x, y, z, intensity, ring -> ``[M, 3]`` points, sensor frame."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LiDAR file missing: {path}")
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size == 0 or raw.size % 5 != 0:
        raise ValueError(f"{path}: corrupt LiDAR file ({raw.size} floats is not a multiple of 5)")
    return raw.reshape(-1, 5)[:, :3].astype(np.float64)


def project_depth(points_ego: np.ndarray, cam_to_ego: np.ndarray, intrinsics: np.ndarray, size: tuple[int, int],
                  min_depth: float, max_depth: float) -> np.ndarray:
    """Sparse camera-z depth image ``[H, W]`` from ego-frame points, nearest point per pixel (min-pooling).

    ``intrinsics`` must be for ``size`` (W, H): projecting straight at the target resolution and keeping the
    minimum depth per pixel is the same as min-pooling a full-resolution projection. 0 marks pixels without data.
    """
    width, height = size
    ego_to_cam = np.linalg.inv(cam_to_ego)
    pts = points_ego[:, :3] @ ego_to_cam[:3, :3].T + ego_to_cam[:3, 3]
    z = pts[:, 2]
    keep = (z >= min_depth) & (z <= max_depth)
    pts, z = pts[keep], z[keep]
    uvw = pts @ np.asarray(intrinsics, dtype=np.float64).T
    u = np.floor(uvw[:, 0] / uvw[:, 2]).astype(np.int64)
    v = np.floor(uvw[:, 1] / uvw[:, 2]).astype(np.int64)
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    depth = np.full(height * width, np.inf)
    np.minimum.at(depth, v[inside] * width + u[inside], z[inside])
    depth[~np.isfinite(depth)] = 0.0
    return depth.reshape(height, width).astype(np.float32)
