"""Exact ray casting of a scene: nearest hit per ray, then the surface attributes of each hit.

Rays share one origin (a camera or LiDAR centre) and come as an (H, W, 3) grid of unit directions in the street
frame. A sensor culls the primitives first and gives, for each visible one, the block of the grid its bounding box
covers (``Region``), so each primitive is intersected only with the rays that can reach it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distillnerf_train.synth.geometry import (intersect_local, local_normals, rotate_from_local, rotate_to_local,
                                              to_local)
from distillnerf_train.synth.scene import SKY_LABEL, Scene

GROUND, NOTHING = -1, -2


@dataclass(frozen=True)
class Region:
    """Primitive ``index`` may be hit only by rays ``dirs[rows, cols]`` (slices, or an index array for cols)."""

    index: int
    rows: slice
    cols: slice | np.ndarray


@dataclass
class Hits:
    """Per ray: distance (inf for none), primitive (GROUND, NOTHING or an index), point, normal, labels."""

    distance: np.ndarray
    primitive: np.ndarray
    point: np.ndarray
    normal: np.ndarray
    texture_coords: np.ndarray  # hit point in the primitive's local frame at time 0 (the ground: street frame)
    semantic: np.ndarray  # uint8, SKY_LABEL where nothing is hit
    instance: np.ndarray  # int32
    material: np.ndarray  # int32, -1 where nothing is hit

    @property
    def hit(self) -> np.ndarray:
        return self.primitive != NOTHING


def nearest_hits(scene: Scene, time: float, origin: np.ndarray, dirs: np.ndarray, regions: list[Region],
                 near: float, far: float) -> tuple[np.ndarray, np.ndarray]:
    """(distance, primitive) of the nearest surface along each ray within (near, far]."""
    prims = scene.primitives
    distance = np.full(dirs.shape[:-1], np.inf)
    primitive = np.full(dirs.shape[:-1], NOTHING, dtype=np.int32)
    if origin[2] > 0:
        with np.errstate(divide="ignore"):
            t_ground = np.where(dirs[..., 2] < 0, -origin[2] / dirs[..., 2], np.inf)
        ground = (t_ground > near) & (t_ground <= far)
        distance[ground] = t_ground[ground]
        primitive[ground] = GROUND
    centers = prims.centers_at(time)
    for region in regions:
        i = region.index
        if isinstance(region.cols, slice):
            block = (region.rows, region.cols)
        else:
            block = np.ix_(np.arange(dirs.shape[0])[region.rows], region.cols)
        sub = dirs[block]
        local_origin = rotate_to_local((origin - centers[i])[None], prims.yaw[i])[0]
        t = intersect_local(int(prims.kind[i]), prims.half[i], local_origin, rotate_to_local(sub, prims.yaw[i]), near)
        current = distance[block]
        closer = (t < current) & (t <= far)
        if closer.any():
            distance[block] = np.where(closer, t, current)
            primitive[block] = np.where(closer, i, primitive[block])
    return distance, primitive


def surface_attributes(scene: Scene, time: float, origin: np.ndarray, dirs: np.ndarray, distance: np.ndarray,
                       primitive: np.ndarray) -> Hits:
    """Points, normals, texture coordinates and labels of the hits found by :func:`nearest_hits`."""
    prims = scene.primitives
    shape = distance.shape
    finite = np.isfinite(distance)
    point = np.where(finite[..., None], origin + dirs * np.where(finite, distance, 0.0)[..., None], 0.0)
    normal = np.zeros(shape + (3,))
    texture = point.copy()
    semantic = np.full(shape, SKY_LABEL, np.uint8)
    instance = np.zeros(shape, np.int32)
    material = np.full(shape, -1, np.int32)

    ground = primitive == GROUND
    if ground.any():
        strip = scene.ground.lookup(point[ground][:, 1])
        normal[ground] = (0.0, 0.0, 1.0)
        semantic[ground] = scene.ground.semantic[strip]
        material[ground] = scene.ground.material[strip]

    obj = primitive >= 0
    if obj.any():
        idx = primitive[obj]
        centers = prims.centers_at(time)[idx]
        yaw = prims.yaw[idx]
        local = to_local(point[obj], centers, yaw)
        normal[obj] = rotate_from_local(local_normals(prims.kind[idx], prims.half[idx], local), yaw)
        texture[obj] = local
        semantic[obj] = prims.semantic[idx]
        instance[obj] = prims.instance[idx]
        material[obj] = prims.material[idx]
    return Hits(distance, primitive, point, normal, texture, semantic, instance, material)


def cast(scene: Scene, time: float, origin: np.ndarray, dirs: np.ndarray, regions: list[Region], near: float,
         far: float) -> Hits:
    distance, primitive = nearest_hits(scene, time, origin, dirs, regions, near, far)
    return surface_attributes(scene, time, origin, dirs, distance, primitive)
