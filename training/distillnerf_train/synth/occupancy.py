"""Occ3D-format ground truth: voxel semantics from the analytic scene, and camera / LiDAR visibility masks.

Semantics: a voxel is occupied when it holds a piece of surface, i.e. some of its sub-samples (``subsamples``^3 on a
closed regular lattice, faces and corners included) lie inside the scene's solids and some outside; solid interiors
(below the ground, inside buildings) are free, as in Occ3D where only surfaces are observed. Its class is the
highest-priority class among the solids it touches (objects over buildings and vegetation over sidewalks over the
ground).

``mask_camera``: a voxel is visible when the camera ray towards its centre, which must fall in an image, reaches
the voxel's bounding sphere before hitting a surface (so the first occupied voxel along a ray is visible).

``mask_lidar``: every voxel that a LiDAR ray traverses (exactly) up to and including its return, or up to its
maximum range.
"""

from __future__ import annotations

import numpy as np

from distillnerf.occ3d import OccGridSpec

from distillnerf_train.synth.config import OccupancySettings
from distillnerf_train.synth.geometry import distance_bound_local, inside_local, rotate_to_local, to_local
from distillnerf_train.synth.scene import CLASS_ID, FREE, Scene


def _priority() -> np.ndarray:
    table = np.zeros(256, np.int32)
    for name in ("barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle", "pedestrian",
                 "traffic_cone", "trailer", "truck", "others"):
        table[CLASS_ID[name]] = 4
    table[CLASS_ID["manmade"]] = 3
    table[CLASS_ID["vegetation"]] = 3
    table[CLASS_ID["sidewalk"]] = 2
    return table


PRIORITY = _priority()


def grid_from_config(cfg: OccupancySettings) -> OccGridSpec:
    """The label grid of the synth config's ``occupancy`` section (cubic voxels; Occ3D's by default)."""
    low, high = np.asarray(cfg.range_min, float), np.asarray(cfg.range_max, float)
    size = tuple(int(round(v)) for v in (high - low) / cfg.voxel_size)
    return OccGridSpec(*((float(lo), float(hi)) for lo, hi in zip(low, high)), size=size)


def _transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    flat = points.reshape(-1, 3)  # one 2-D product: far faster than a batched one
    return (flat @ matrix[:3, :3].T + matrix[:3, 3]).reshape(points.shape)


def semantics(scene: Scene, time: float, ego_to_street: np.ndarray, grid: OccGridSpec, subsamples: int) -> np.ndarray:
    """(X, Y, Z) uint8 Occ3D classes of the scene at ``time`` in the ego frame ``ego_to_street``; FREE elsewhere.

    The ego never pitches or rolls in this world (flat ground), so voxel layers are horizontal in the street frame:
    a voxel that no primitive comes near holds the ground surface exactly when its z range contains 0. Only voxels
    near a primitive's surface are sampled on the lattice.
    """
    if not np.allclose(ego_to_street[2, :3], (0.0, 0.0, 1.0)):
        raise ValueError("occupancy expects an ego frame without pitch or roll")
    prims = scene.primitives
    size, h = grid.cubic_voxel, grid.half_diagonal
    axes = [grid.corner[k] + (np.arange(grid.shape[k]) + 0.5) * size for k in range(3)]
    z_street = axes[2] + ego_to_street[2, 3]

    # Ground: the layer whose closed z range holds z = 0 (lattice points below and above), class by ground strip.
    out = np.full(grid.shape, FREE, np.uint8)
    ground_layers = (z_street - size / 2 <= 0.0) & (z_street + size / 2 > 0.0)
    column_xy = np.stack(np.meshgrid(axes[0], axes[1], indexing="ij"), -1)
    column_y = _transform(ego_to_street, np.concatenate([column_xy, np.zeros(column_xy.shape[:2] + (1,))], -1))[..., 1]
    out[:, :, ground_layers] = scene.ground.semantic[scene.ground.lookup(column_y)][..., None]

    # Voxels near a primitive's surface (conservative distance bound), minus those deep inside any solid.
    near_surface = np.zeros(grid.shape, bool)
    interior = np.zeros(grid.shape, bool)
    interior[:, :, z_street + size / 2 <= 0.0] = True  # under the ground: every lattice point is inside
    street_to_ego = np.linalg.inv(ego_to_street)
    corners = _transform(street_to_ego, prims.corners_at(time))  # (P, 8, 3)
    low = np.floor((corners.min(axis=1) - grid.corner) / size).astype(int) - 1
    high = np.floor((corners.max(axis=1) - grid.corner) / size).astype(int) + 2
    low, high = np.maximum(low, 0), np.minimum(high, grid.shape)
    centers_t = prims.centers_at(time)
    blocks = {}
    for i in np.flatnonzero(np.all(low < high, axis=1)):
        block = tuple(slice(low[i, k], high[i, k]) for k in range(3))
        centers = np.stack(np.meshgrid(*[axes[k][block[k]] for k in range(3)], indexing="ij"), -1)
        local = to_local(_transform(ego_to_street, centers), centers_t[i], prims.yaw[i])
        bound = distance_bound_local(int(prims.kind[i]), prims.half[i], local)
        near_surface[block] |= np.abs(bound) <= h
        interior[block] |= bound <= -h
        blocks[int(i)] = (low[i], high[i])
    out[interior] = FREE
    index = np.argwhere(near_surface & ~interior)  # (N, 3)
    if index.shape[0] == 0:
        return out

    # Lattice over each remaining voxel: occupied when some points are inside a solid and some outside.
    n = int(subsamples)
    # A closed lattice (it includes the voxel's faces and corners), so a surface on a face counts too.
    offsets = np.stack(np.meshgrid(*[np.linspace(-0.5, 0.5, n)] * 3, indexing="ij"), -1).reshape(-1, 3)
    centers = _transform(ego_to_street, grid.voxel_centres(index))  # lattice point = centre + rigid offset: no (N, S, 3)
    offsets = offsets * size @ ego_to_street[:3, :3].T  # transform of all points
    inside_any = centers[:, None, 2] + offsets[None, :, 2] <= 0.0
    best_class = np.where(inside_any.any(axis=1), out[tuple(index.T)], FREE).astype(np.uint8)
    best_priority = np.where(inside_any.any(axis=1), 1, 0)
    for i, (lo, hi) in blocks.items():
        sel = np.flatnonzero(np.all((index >= lo) & (index < hi), axis=1))
        if sel.size == 0:
            continue
        local = (to_local(centers[sel], centers_t[i], prims.yaw[i])[:, None, :]
                 + rotate_to_local(offsets, prims.yaw[i])[None])
        inside = inside_local(int(prims.kind[i]), prims.half[i], local)
        touched = inside.any(axis=1)
        if not touched.any():
            continue
        inside_any[sel] |= inside
        cls = prims.semantic[i]
        better = touched & (PRIORITY[cls] > best_priority[sel])
        best_class[sel[better]] = cls
        best_priority[sel[better]] = PRIORITY[cls]
    occupied = inside_any.any(axis=1) & ~inside_any.all(axis=1)
    out[tuple(index.T)] = np.where(occupied, best_class, FREE)
    return out


def camera_mask(grid: OccGridSpec, ego_pose: np.ndarray, frames, exact_distance=None) -> np.ndarray:
    """(X, Y, Z) uint8: voxels seen by any of the camera ``frames`` (see the module docstring).

    ``ego_pose`` (ego -> global) is the grid's frame, at the LiDAR time; each frame has its own ego pose. The rendered
    ray distances of the 2x2 pixels around a voxel's projection decide most voxels; where they disagree (depth
    edges, grazing ground), ``exact_distance(frame, points_cam)`` -- the distance to the first surface along the rays
    towards camera-frame points -- settles it exactly when given.
    """
    centers = grid.all_voxel_centres().reshape(-1, 3).astype(np.float32)  # ego-frame metres: float32 is ample
    visible = np.zeros(centers.shape[0], bool)
    for frame in frames:
        cal = frame.calibration
        grid_to_cam = np.linalg.inv(frame.ego_pose @ cal.cam_to_ego) @ ego_pose  # composed in float64
        p = _transform(grid_to_cam.astype(np.float32), centers)
        front = np.flatnonzero(p[:, 2] > 1e-3)
        uv = p[front, :2] / p[front, 2:3] * np.diag(cal.intrinsics)[:2] + cal.intrinsics[:2, 2]
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < cal.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cal.height)
        index, uv = front[inside], uv[inside]
        reach = np.linalg.norm(p[index].astype(np.float64), axis=1) - grid.half_diagonal  # the ray must get this far
        distance = np.where(frame.distance > 0, frame.distance, np.inf).astype(np.float64)  # sky: never stops
        u0 = np.clip(np.floor(uv[:, 0] - 0.5).astype(int), 0, cal.width - 1)
        v0 = np.clip(np.floor(uv[:, 1] - 0.5).astype(int), 0, cal.height - 1)
        u1, v1 = np.minimum(u0 + 1, cal.width - 1), np.minimum(v0 + 1, cal.height - 1)
        around = np.stack([distance[v0, u0], distance[v0, u1], distance[v1, u0], distance[v1, u1]], axis=1)
        seen = reach <= around.min(axis=1)
        unsure = ~seen & (reach <= around.max(axis=1))
        if exact_distance is not None and unsure.any():
            seen[unsure] = reach[unsure] <= exact_distance(frame, p[index[unsure]].astype(np.float64))
        else:
            nearest = distance[np.floor(uv[:, 1]).astype(int), np.floor(uv[:, 0]).astype(int)]
            seen |= unsure & (reach <= nearest)
        visible[index[seen]] = True
    return visible.reshape(grid.shape).astype(np.uint8)


def _grid_exit(grid: OccGridSpec, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Distance at which rays from ``origin`` (inside the grid) leave it."""
    high = grid.corner + np.array(grid.shape) * grid.cubic_voxel
    with np.errstate(divide="ignore"):
        t = np.where(dirs > 0, (high - origin) / dirs, np.where(dirs < 0, (grid.corner - origin) / dirs, np.inf))
    return t.min(axis=1)


def lidar_mask(grid: OccGridSpec, origin: np.ndarray, dirs: np.ndarray, ranges: np.ndarray,
               max_range: float) -> np.ndarray:
    """(X, Y, Z) uint8: every voxel that a LiDAR ray (ego frame ``origin``, unit ``dirs``) passes through, up to and
    including the voxel of its return; ``ranges`` is inf for rays without a return (traced to ``max_range``).

    Exact traversal without marching: a ray enters a new voxel exactly where it crosses a voxel plane, so the voxels
    it visits are its start voxel plus, for each plane crossing, the voxel just behind that plane.
    """
    hit = np.isfinite(ranges)
    length = np.maximum(np.minimum(np.where(hit, ranges, max_range), _grid_exit(grid, origin, dirs)), 0.0)
    size = grid.cubic_voxel
    start = np.floor((origin - grid.corner) / size).astype(np.int64)
    end = np.floor((origin + dirs * length[:, None] - grid.corner) / size).astype(np.int64)
    mask = np.zeros(grid.shape, np.uint8)
    chunks = [start[None]]
    for axis in range(3):
        counts = np.abs(end[:, axis] - start[axis])
        ray = np.repeat(np.arange(len(dirs)), counts)
        if ray.size == 0:
            continue
        step = np.arange(ray.size) - (np.cumsum(counts) - counts)[ray]
        forward = dirs[ray, axis] > 0
        behind = np.where(forward, start[axis] + 1 + step, start[axis] - 1 - step)  # voxel index after the crossing
        plane = grid.corner[axis] + np.where(forward, behind, behind + 1) * size
        t = (plane - origin[axis]) / dirs[ray, axis]
        index = np.floor((origin + dirs[ray] * t[:, None] - grid.corner) / size).astype(np.int64)
        index[:, axis] = behind
        chunks.append(index)
    index = np.concatenate(chunks)
    valid = np.all((index >= 0) & (index < np.array(grid.shape)), axis=1)
    mask[tuple(index[valid].T)] = 1
    returns, valid = grid.index_of(origin + dirs[hit] * ranges[hit, None])  # the voxel each return lies in
    mask[tuple(returns[valid].T)] = 1
    return mask
