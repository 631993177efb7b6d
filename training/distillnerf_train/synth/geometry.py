"""Convex primitives of the synthetic world and their exact ray, inside and distance tests.

Every object is a union of three primitive kinds, each an axis-aligned shape in its own local frame (rotated by
``yaw`` about z around ``center``), with half extents ``half``:

- ``BOX``: |x| <= hx, |y| <= hy, |z| <= hz;
- ``CYLINDER``: (x/hx)^2 + (y/hy)^2 <= 1, |z| <= hz (vertical; poles, trunks, bodies, cones);
- ``ELLIPSOID``: (x/hx)^2 + (y/hy)^2 + (z/hz)^2 <= 1 (tree crowns, heads, bushes).

The ground is the half-space z <= 0 of the street frame. Rotations are about z only and moving primitives translate
at constant velocity, so a ray parameter t is preserved by the change to local coordinates and every hit is exact.
All functions are vectorised over rays or points with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOX, CYLINDER, ELLIPSOID = 0, 1, 2

#: Corners of the unit cube, used for the bounding boxes of primitives.
_UNIT_CORNERS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)


@dataclass
class Primitives:
    """A flat table of P primitives (street frame, at time 0; ``velocity`` moves them)."""

    kind: np.ndarray  # (P,) int8
    center: np.ndarray  # (P, 3)
    half: np.ndarray  # (P, 3)
    yaw: np.ndarray  # (P,)
    semantic: np.ndarray  # (P,) uint8 Occ3D class
    instance: np.ndarray  # (P,) int32, shared by the parts of one object; 0 for none
    material: np.ndarray  # (P,) int32 index into the scene's materials
    velocity: np.ndarray  # (P, 3)

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    @staticmethod
    def empty() -> "Primitives":
        return Primitives(np.zeros(0, np.int8), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros(0, np.uint8),
                          np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros((0, 3)))

    @staticmethod
    def from_rows(rows: list[dict]) -> "Primitives":
        """Build from dicts with keys kind, center, half, yaw, semantic, instance, material, velocity."""
        if not rows:
            return Primitives.empty()
        return Primitives(
            np.array([r["kind"] for r in rows], np.int8),
            np.array([r["center"] for r in rows], np.float64).reshape(-1, 3),
            np.array([r["half"] for r in rows], np.float64).reshape(-1, 3),
            np.array([r.get("yaw", 0.0) for r in rows], np.float64),
            np.array([r["semantic"] for r in rows], np.uint8),
            np.array([r.get("instance", 0) for r in rows], np.int32),
            np.array([r.get("material", 0) for r in rows], np.int32),
            np.array([r.get("velocity", (0.0, 0.0, 0.0)) for r in rows], np.float64).reshape(-1, 3),
        )

    def centers_at(self, time: float) -> np.ndarray:
        return self.center + self.velocity * time

    def corners_at(self, time: float) -> np.ndarray:
        """(P, 8, 3) corners of each primitive's bounding box at ``time``."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        local = _UNIT_CORNERS[None] * self.half[:, None, :]
        x = c[:, None] * local[..., 0] - s[:, None] * local[..., 1]
        y = s[:, None] * local[..., 0] + c[:, None] * local[..., 1]
        return np.stack([x, y, local[..., 2]], axis=-1) + self.centers_at(time)[:, None, :]


def to_local(points: np.ndarray, center: np.ndarray, yaw: float | np.ndarray) -> np.ndarray:
    """Street-frame points (..., 3) into a primitive's local frame (or row by row: ``yaw`` (N,), ``center`` (N, 3))."""
    c, s = np.cos(yaw), np.sin(yaw)
    d = points - center
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1], d[..., 2]], axis=-1)


def rotate_to_local(vectors: np.ndarray, yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([c * vectors[..., 0] + s * vectors[..., 1], -s * vectors[..., 0] + c * vectors[..., 1],
                     vectors[..., 2]], axis=-1)


def rotate_from_local(vectors: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([c * vectors[..., 0] - s * vectors[..., 1], s * vectors[..., 0] + c * vectors[..., 1],
                     vectors[..., 2]], axis=-1)


def unit_sphere_hits(o: np.ndarray, d: np.ndarray):
    """Entry and exit distances of rays ``o + t * d`` through the unit sphere (any dimension; NaN on a miss), and
    the quadratic's a = |d|^2 and c = |o|^2 - 1 (c <= 0: the origin is inside)."""
    a = np.einsum("...i,...i->...", d, d)
    b = np.einsum("...i,...i->...", d, o)
    c = float(o @ o) - 1.0
    disc = b * b - a * c
    root = np.sqrt(np.where(disc >= 0, disc, np.nan))
    return (-b - root) / a, (-b + root) / a, a, c


def intersect_local(kind: int, half: np.ndarray, origin: np.ndarray, dirs: np.ndarray, near: float) -> np.ndarray:
    """Entry distance t > near of rays ``origin + t * dirs`` (local frame) into one primitive; inf on a miss."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == BOX:
            inv = 1.0 / dirs
            t1 = (-half - origin) * inv
            t2 = (half - origin) * inv
            near_t, far_t = np.minimum(t1, t2), np.maximum(t1, t2)  # NaN where a ray lies in a slab's plane
            t_in = np.fmax(np.fmax(near_t[..., 0], near_t[..., 1]), near_t[..., 2])
            t_out = np.fmin(np.fmin(far_t[..., 0], far_t[..., 1]), far_t[..., 2])
        elif kind == ELLIPSOID:
            t_in, t_out, _, _ = unit_sphere_hits(origin / half, dirs / half)
        else:  # CYLINDER: an infinite unit circle in xy, cut by the z slab
            side_in, side_out, a, c = unit_sphere_hits(origin[:2] / half[:2], dirs[..., :2] / half[:2])
            vertical = a == 0  # a ray along the axis: inside the disc or never
            side_in = np.where(vertical, -np.inf if c <= 0 else np.nan, side_in)
            side_out = np.where(vertical, np.inf if c <= 0 else np.nan, side_out)
            inv_z = 1.0 / dirs[..., 2]
            z1, z2 = (-half[2] - origin[2]) * inv_z, (half[2] - origin[2]) * inv_z
            z_in, z_out = np.minimum(z1, z2), np.maximum(z1, z2)
            flat = dirs[..., 2] == 0
            inside_z = abs(origin[2]) <= half[2]
            z_in = np.where(flat, -np.inf if inside_z else np.nan, z_in)
            z_out = np.where(flat, np.inf if inside_z else np.nan, z_out)
            t_in, t_out = np.fmax(side_in, z_in), np.fmin(side_out, z_out)
            t_in = np.where(np.isnan(side_in) | np.isnan(z_in), np.nan, t_in)
        hit = (t_out >= t_in) & (t_in > near)
    return np.where(hit, t_in, np.inf)


def local_normals(kind: np.ndarray, half: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Outward unit normals at local surface points (N, 3) of primitives of the given kinds (N,)."""
    q = points / half
    normals = np.zeros_like(points)
    box = kind == BOX
    if box.any():
        axis = np.argmax(np.abs(q[box]), axis=-1)
        n = np.zeros((int(box.sum()), 3))
        n[np.arange(n.shape[0]), axis] = np.sign(q[box][np.arange(n.shape[0]), axis])
        normals[box] = n
    ell = kind == ELLIPSOID
    if ell.any():
        normals[ell] = q[ell] / half[ell]
    cyl = kind == CYLINDER
    if cyl.any():
        qc = q[cyl]
        radial = np.hypot(qc[:, 0], qc[:, 1])
        cap = np.abs(qc[:, 2]) > radial
        n = np.concatenate([qc[:, :2] / half[cyl][:, :2], np.zeros((qc.shape[0], 1))], axis=1)
        n[cap] = 0.0
        n[cap, 2] = np.sign(qc[cap, 2])
        normals[cyl] = n
    return normals / np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)


def inside_local(kind: int, half: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Whether local points (..., 3) lie inside (or on) one primitive."""
    q = points / half
    if kind == BOX:
        return np.all(np.abs(q) <= 1.0, axis=-1)
    if kind == ELLIPSOID:
        return np.einsum("...i,...i->...", q, q) <= 1.0
    return (q[..., 0] ** 2 + q[..., 1] ** 2 <= 1.0) & (np.abs(q[..., 2]) <= 1.0)


def distance_bound_local(kind: int, half: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A signed distance whose magnitude never exceeds the true distance to the surface (negative inside).

    Used to skip voxels that are certainly far from a surface: |bound| > r means no surface within r.
    """
    if kind == BOX:
        return np.max(np.abs(points) - half, axis=-1)
    if kind == ELLIPSOID:
        k = np.linalg.norm(points / half, axis=-1)
        return (k - 1.0) * half.min()
    k = np.hypot(points[..., 0] / half[0], points[..., 1] / half[1])
    return np.maximum((k - 1.0) * half[:2].min(), np.abs(points[..., 2]) - half[2])
