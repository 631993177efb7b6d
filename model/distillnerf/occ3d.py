"""The Occ3D-nuScenes vocabulary and grid, with numpy only: class names and colours, which classes are ground,
and the grid geometry every consumer (model, metrics, node, demo report) shares.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Occ3D-nuScenes class names, index = label; 17 = free.
OCC3D_CLASSES = ("others", "barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle", "pedestrian",
                 "traffic_cone", "trailer", "truck", "driveable_surface", "other_flat", "sidewalk", "terrain",
                 "manmade", "vegetation", "free")
FREE_LABEL = 17
#: Ground surface classes (driveable surface, other flat, sidewalk, terrain): free space for a bird's-eye map.
GROUND_LABELS = (11, 12, 13, 14)
#: Occ3D-nuScenes class colours (RGB), index = label, as the Occ3D/SurroundOcc visualisations; 17 (free) white.
OCC3D_PALETTE = (
    (0, 0, 0), (255, 120, 50), (255, 192, 203), (255, 255, 0), (0, 150, 245), (0, 255, 255), (200, 180, 0),
    (255, 0, 0), (255, 240, 150), (135, 60, 0), (160, 32, 240), (255, 0, 255), (139, 137, 137), (75, 0, 75),
    (150, 240, 80), (230, 230, 250), (0, 175, 0), (255, 255, 255),
)


@dataclass(frozen=True)
class OccGridSpec:
    """A regular ego-frame grid, arrays indexed [ix, iy, iz]; defaults are Occ3D-nuScenes."""

    x_range: tuple[float, float] = (-40.0, 40.0)
    y_range: tuple[float, float] = (-40.0, 40.0)
    z_range: tuple[float, float] = (-1.0, 5.4)
    size: tuple[int, int, int] = (200, 200, 16)

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        ranges = (self.x_range, self.y_range, self.z_range)
        return tuple((hi - lo) / n for (lo, hi), n in zip(ranges, self.size))

    @classmethod
    def from_corner(cls, origin, voxel_size, size) -> "OccGridSpec":
        """The grid whose voxel 0 has its minimum corner at ``origin`` (x, y, z), ``size`` voxels of ``voxel_size``."""
        ranges = [(float(o), float(o) + float(v) * int(n)) for o, v, n in zip(origin, voxel_size, size)]
        return cls(ranges[0], ranges[1], ranges[2], tuple(int(n) for n in size))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape [X, Y, Z] of the grid's volumes."""
        return self.size

    @property
    def origin(self) -> tuple[float, float, float]:
        """Ego coordinates of the grid's minimum corner."""
        return (self.x_range[0], self.y_range[0], self.z_range[0])

    @property
    def corner(self) -> np.ndarray:
        """``origin`` as a float64 array (the minimum corner of voxel 0)."""
        return np.asarray(self.origin, dtype=np.float64)

    @property
    def cubic_voxel(self) -> float:
        """The edge of the grid's cubic voxels; ValueError for a grid whose voxels are not cubes."""
        edges = self.voxel_size
        if max(edges) - min(edges) > 1e-9 * max(edges):
            raise ValueError(f"voxels of {edges} m are not cubes")
        return float(edges[0])

    @property
    def half_diagonal(self) -> float:
        """Half the space diagonal of a (cubic) voxel: a point this close to its centre may be in it."""
        return self.cubic_voxel * np.sqrt(3.0) / 2.0

    def voxel_centres(self, indices) -> np.ndarray:
        """Ego coordinates [..., 3] of the centres of voxels ``indices`` [..., 3] (ix, iy, iz)."""
        return self.corner + (np.asarray(indices, dtype=np.float64) + 0.5) * np.asarray(self.voxel_size)

    def all_voxel_centres(self) -> np.ndarray:
        """Ego coordinates [X, Y, Z, 3] of every voxel centre."""
        axes = [self.origin[k] + (np.arange(self.size[k]) + 0.5) * self.voxel_size[k] for k in range(3)]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)

    def index_of(self, points) -> tuple[np.ndarray, np.ndarray]:
        """Integer voxel indices [..., 3] of ego-frame points, and whether each lies in the grid."""
        index = np.floor((np.asarray(points) - self.corner) / np.asarray(self.voxel_size)).astype(np.int64)
        valid = np.all((index >= 0) & (index < np.array(self.size)), axis=-1)
        return index, valid

    def centres(self, device="cpu", subsamples=1):
        """Sample points (torch) [X*Y*Z*S, 3] ordered [ix, iy, iz, sub] (S sub-samples per voxel, a regular
        sub-grid of ``subsamples`` per axis); the voxel centres when subsamples is 1. Built once per (spec,
        device, sub-samples) and shared: treat the result as read-only."""
        import torch

        from distillnerf.occupancy import _sample_points, per_axis

        return _sample_points(self, torch.device(device), per_axis(subsamples))
