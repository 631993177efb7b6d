"""Ray grids of the sensors and the culling that limits each primitive to the rays that can reach it.

- Pinhole camera: one ray through each pixel centre (u + 0.5, v + 0.5), optical frame (x right, y down, z forward).
  A primitive in front of the camera covers the pixel rectangle of its projected bounding-box corners (exact for
  convex shapes); one that straddles the image plane gets the whole image.
- Spinning LiDAR: a (beams, azimuth steps) grid of directions in the LiDAR frame; a primitive covers the elevation
  rows and azimuth columns of its bounding sphere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distillnerf_train.synth.config import LidarSettings
from distillnerf_train.synth.geometry import Primitives
from distillnerf_train.synth.raycast import Region


def camera_directions(intrinsics: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, 3) unit ray directions in the camera's optical frame, through the pixel centres."""
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    pixels = np.stack([u, v, np.ones_like(u)], axis=-1)
    rays = pixels @ np.linalg.inv(intrinsics).T
    return rays / np.linalg.norm(rays, axis=-1, keepdims=True)


def camera_regions(prims: Primitives, time: float, street_to_cam: np.ndarray, intrinsics: np.ndarray, width: int,
                   height: int, near: float, far: float) -> list[Region]:
    """Primitives a pinhole camera can see, each with the pixel rectangle that covers it."""
    if len(prims) == 0:
        return []
    corners = prims.corners_at(time) @ street_to_cam[:3, :3].T + street_to_cam[:3, 3]  # (P, 8, 3)
    z = corners[..., 2]
    in_front = z > near
    nearest = np.linalg.norm(corners, axis=-1).min(axis=1)
    regions = []
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = corners[..., :2] / z[..., None] * np.diag(intrinsics)[:2] + intrinsics[:2, 2]
    for i in np.flatnonzero(in_front.any(axis=1)):
        half_diag = np.linalg.norm(prims.half[i])
        if nearest[i] - 2 * half_diag > far:
            continue
        if not in_front[i].all():
            regions.append(Region(int(i), slice(0, height), slice(0, width)))
            continue
        u0, v0 = np.floor(uv[i].min(axis=0)).astype(int)
        u1, v1 = np.ceil(uv[i].max(axis=0)).astype(int)
        u0, u1 = max(u0, 0), min(u1 + 1, width)
        v0, v1 = max(v0, 0), min(v1 + 1, height)
        if u0 < u1 and v0 < v1:
            regions.append(Region(int(i), slice(v0, v1), slice(u0, u1)))
    return regions


@dataclass(frozen=True)
class LidarPattern:
    """A spinning LiDAR: ``elevations`` (beams, ascending = ring index) and ``azimuths`` (steps) in radians."""

    elevations: np.ndarray
    azimuths: np.ndarray
    min_range: float
    max_range: float

    @staticmethod
    def from_config(cfg: LidarSettings) -> "LidarPattern":
        low, high = np.radians(cfg.elevation_deg)
        steps = cfg.azimuth_steps
        azimuths = -np.pi + (np.arange(steps) + 0.5) * (2 * np.pi / steps)
        return LidarPattern(np.linspace(low, high, cfg.beams), azimuths, cfg.min_range, cfg.max_range)

    def directions(self) -> np.ndarray:
        """(beams, steps, 3) unit directions in the LiDAR frame."""
        el, az = np.meshgrid(self.elevations, self.azimuths, indexing="ij")
        return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)

    def regions(self, prims: Primitives, time: float, street_to_lidar: np.ndarray) -> list[Region]:
        """Primitives within range, each with the beams and azimuth columns of its bounding sphere."""
        if len(prims) == 0:
            return []
        centers = prims.centers_at(time) @ street_to_lidar[:3, :3].T + street_to_lidar[:3, 3]
        radius = np.linalg.norm(prims.half, axis=1)
        dist = np.linalg.norm(centers, axis=1)
        rho = np.hypot(centers[:, 0], centers[:, 1])
        steps = len(self.azimuths)
        step = 2 * np.pi / steps
        beams = len(self.elevations)
        regions = []
        for i in np.flatnonzero(dist - radius <= self.max_range):
            if dist[i] <= radius[i] or rho[i] <= radius[i]:
                regions.append(Region(int(i), slice(0, beams), slice(0, steps)))
                continue
            spread = np.arcsin(radius[i] / dist[i])
            elevation = np.arctan2(centers[i, 2], rho[i])
            r0 = int(np.searchsorted(self.elevations, elevation - spread, side="left"))
            r1 = int(np.searchsorted(self.elevations, elevation + spread, side="right"))
            if r0 >= r1:
                continue
            half_width = np.arcsin(min(1.0, radius[i] / rho[i]))
            azimuth = np.arctan2(centers[i, 1], centers[i, 0])
            c0 = int(np.floor((azimuth - half_width + np.pi) / step))
            c1 = int(np.ceil((azimuth + half_width + np.pi) / step))
            cols = np.arange(c0, c1 + 1) % steps
            regions.append(Region(int(i), slice(r0, r1), cols))
        return regions
