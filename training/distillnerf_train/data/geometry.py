"""Pose composition and LiDAR-to-image projection for training targets (numpy, float64 for poses)."""

from __future__ import annotations

import numpy as np


def rescale_intrinsics(intrinsics: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Intrinsics of an image resampled from ``from_size`` (W, H) to ``to_size`` (pixel-edge convention, as
    :meth:`distillnerf.rig.CameraCalibration.resized`)."""
    scale = np.diag([to_size[0] / from_size[0], to_size[1] / from_size[1], 1.0])
    return scale @ np.asarray(intrinsics, dtype=np.float64)


def camera_to_keyframe_ego(keyframe_ego_to_global: np.ndarray, camera_ego_to_global: np.ndarray,
                           camera_to_ego: np.ndarray) -> np.ndarray:
    """Camera pose in the keyframe's ego frame, with the ego pose taken at the camera's own timestamp.

    nuScenes cameras fire up to ~50 ms after the LiDAR; at 10 m/s that is half a metre of ego motion, so the
    camera-time ego pose must be used, then expressed relative to the LiDAR-time (keyframe) ego frame.
    """
    return np.linalg.inv(keyframe_ego_to_global) @ camera_ego_to_global @ camera_to_ego


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
