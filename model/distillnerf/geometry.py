"""Camera geometry: pixel rays, camera z <-> ray distance, projection, and the paper's space contraction.

Conventions: camera frames are optical (x right, y down, z forward); intrinsics use the pixel-edge convention
(pixel ``u`` covers [u, u+1), its centre is ``u + 0.5``), so resizing an image by ``s`` scales ``K``'s first two
rows by ``s``. Depth along a ray ("distance") and camera z differ by the factor ``z_per_distance`` = cos of the
angle between the ray and the optical axis; every depth the model publishes is camera z.
"""

from __future__ import annotations

import torch
from torch import Tensor


def scale_intrinsics(intrinsics: Tensor, scale_x: float, scale_y: float) -> Tensor:
    """Intrinsics of the same camera after resizing its image by (scale_x, scale_y)."""
    scale = torch.tensor([scale_x, scale_y, 1.0], dtype=intrinsics.dtype, device=intrinsics.device)
    return intrinsics * scale[:, None]


def pixel_rays(intrinsics: Tensor, cam_to_ego: Tensor, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """Rays through pixel centres of a ``width`` x ``height`` image whose intrinsics are ``intrinsics``.

    intrinsics [..., 3, 3], cam_to_ego [..., 4, 4] -> origins [..., h, w, 3], unit directions [..., h, w, 3] (ego
    frame), z_per_distance [..., h, w] (camera z of the point at unit distance along the ray).
    """
    device, dtype = intrinsics.device, intrinsics.dtype
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=dtype) + 0.5,
                          torch.arange(width, device=device, dtype=dtype) + 0.5, indexing="ij")
    pixels = torch.stack([u, v, torch.ones_like(u)], dim=-1)  # [h, w, 3]
    k_inv = torch.linalg.inv(intrinsics)  # [..., 3, 3]
    cam_dirs = torch.einsum("...ij,hwj->...hwi", k_inv, pixels)  # camera frame, z = 1
    norm = cam_dirs.norm(dim=-1)
    z_per_distance = 1.0 / norm
    rotation = cam_to_ego[..., :3, :3]
    directions = torch.einsum("...ij,...hwj->...hwi", rotation, cam_dirs / norm[..., None])
    origins = cam_to_ego[..., None, None, :3, 3].expand_as(directions)
    return origins, directions, z_per_distance


def distance_to_camera_z(distance: Tensor, z_per_distance: Tensor) -> Tensor:
    """Camera z of a point at ``distance`` along its pixel's ray."""
    return distance * z_per_distance


def camera_z_to_distance(camera_z: Tensor, z_per_distance: Tensor) -> Tensor:
    """Distance along the pixel's ray of a point at camera z ``camera_z``."""
    return camera_z / z_per_distance


def ego_to_pixel(intrinsics: Tensor, cam_to_ego: Tensor) -> Tensor:
    """[..., 4, 4] map of homogeneous ego points to (u·w, v·w, w, camera z): the pixel-homogeneous coordinates,
    then camera z (w equals z for pinhole intrinsics; kept apart so the last intrinsics row need not be [0, 0, 1])."""
    ego_to_cam = torch.linalg.inv(cam_to_ego)[..., :3, :]
    return torch.cat([intrinsics @ ego_to_cam, ego_to_cam[..., 2:, :]], dim=-2)


def project_points(points: Tensor, intrinsics: Tensor, cam_to_ego: Tensor) -> tuple[Tensor, Tensor]:
    """Project ego-frame points into cameras ([..., 3, 3], [..., 4, 4]) -> pixel uv [..., M, 2], z [..., M]. The
    points are [..., M, 3], or [M, 3] shared by every camera (the Occ3D grid's centres), projected by one GEMM for
    all cameras at once (a batched product with three-long rows costs ten times more).

    uv uses the pixel-edge convention (pixel u covers [u, u+1)); z <= 0 means behind the camera.
    """
    matrix = ego_to_pixel(intrinsics, cam_to_ego)
    if points.dim() == 2:
        pix = transform_shared_points(points, matrix).transpose(-1, -2)
    else:
        pix = points @ matrix[..., :3].transpose(-1, -2) + matrix[..., None, :, 3]
    z = pix[..., 3]
    uv = pix[..., :2] / pix[..., 2:3].clamp_min(1e-6)
    return uv, z


def transform_shared_points(points: Tensor, matrices: Tensor) -> Tensor:
    """Points [M, 3] through affine maps [..., R, 4] (homogeneous rows) -> [..., R, M], by one GEMM for all maps
    (each output row contiguous, as per-camera images of the points want them)."""
    batch, rows = matrices.shape[:-2], matrices.shape[-2]
    flat = matrices.reshape(-1, 4)
    out = (flat[:, :3] @ points.T).add_(flat[:, 3:])  # [maps * R, M]; addmm with this bias is 7x slower
    return out.reshape(*batch, rows, points.shape[0])


def _contract_scalar(x: Tensor, radius: float, alpha: float) -> Tensor:
    """Contract a non-negative magnitude: alpha*x/r inside r, 1 - (1-alpha)*r/x outside."""
    inside = alpha * x / radius
    outside = 1.0 - (1.0 - alpha) * radius / x.clamp_min(radius)
    return torch.where(x < radius, inside, outside)


def _uncontract_scalar(s: Tensor, radius: float, alpha: float) -> Tensor:
    inside = s * radius / alpha
    outside = (1.0 - alpha) * radius / (1.0 - s).clamp_min(1e-12)
    return torch.where(s < alpha, inside, outside)


def _contract_factor(magnitude: Tensor, radius: float, alpha: float) -> Tensor:
    """contracted / original magnitude: alpha/r inside r, (1 - (1-alpha) r/x) / x outside (one pass, no sign)."""
    m = magnitude.clamp_min(radius)
    outside = (1.0 - (1.0 - alpha) * radius / m) / m
    return torch.where(magnitude < radius, alpha / radius, outside)


def contract(points: Tensor, radius_xy: float, radius_z: float, alpha: float) -> Tensor:
    """Map ego points [..., 3] (metres) into [-1, 1]^3: xy contracted by their joint norm, z on its own."""
    return torch.stack(contract_components(*points.unbind(-1), radius_xy, radius_z, alpha), dim=-1)


def contract_components(x: Tensor, y: Tensor, z: Tensor, radius_xy: float, radius_z: float, alpha: float
                        ) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`contract` on separate coordinate arrays (any shape). This runs on every ray sample: contiguous
    components and a per-group scale factor keep it to few tensor passes."""
    factor_xy = _contract_factor(torch.hypot(x, y), radius_xy, alpha)
    factor_z = _contract_factor(z.abs(), radius_z, alpha)
    return x * factor_xy, y * factor_xy, z * factor_z


def uncontract(coords: Tensor, radius_xy: float, radius_z: float, alpha: float) -> Tensor:
    """Inverse of :func:`contract` for coordinates with |s| < 1."""
    xy, z = coords[..., :2], coords[..., 2:]
    s_xy = xy.norm(dim=-1, keepdim=True)
    norm_xy = _uncontract_scalar(s_xy, radius_xy, alpha)
    xy_out = xy * (norm_xy / s_xy.clamp_min(1e-12))
    z_out = torch.sign(z) * _uncontract_scalar(z.abs(), radius_z, alpha)
    return torch.cat([xy_out, z_out], dim=-1)


def contract_distance(distance: Tensor, radius: float, alpha: float) -> Tensor:
    """The same contraction applied to a scalar distance (used to place stage-1 bins beyond the linear range)."""
    return _contract_scalar(distance, radius, alpha)


def uncontract_distance(s: Tensor, radius: float, alpha: float) -> Tensor:
    return _uncontract_scalar(s, radius, alpha)
