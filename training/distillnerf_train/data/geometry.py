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


