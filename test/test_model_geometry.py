"""Geometry: pixel rays invert projection, camera z <-> ray distance, and the paper's contraction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distillnerf.geometry import (camera_z_to_distance, contract, distance_to_camera_z, pixel_rays, project_points,
                                  scale_intrinsics, uncontract)
from distillnerf.rig import load_rig


@pytest.fixture(scope="module")
def rig_tensors():
    rig = load_rig("nuscenes").resized(64, 36)
    k = torch.tensor(np.stack([c.intrinsics for c in rig.cameras]), dtype=torch.float64)
    e = torch.tensor(np.stack([c.cam_to_ego for c in rig.cameras]), dtype=torch.float64)
    return k, e


def test_rays_invert_projection(rig_tensors):
    k, e = rig_tensors
    origins, directions, z_per_distance = pixel_rays(k, e, 36, 64)
    assert origins.shape == directions.shape == (6, 36, 64, 3)
    assert torch.allclose(directions.norm(dim=-1), torch.ones(1, dtype=torch.float64))
    distance = torch.linspace(1.0, 80.0, 36 * 64, dtype=torch.float64).reshape(36, 64)
    points = origins + directions * distance[..., None]
    uv, z = project_points(points.reshape(6, -1, 3), k, e)
    v, u = torch.meshgrid(torch.arange(36.0), torch.arange(64.0), indexing="ij")
    expected_uv = torch.stack([u + 0.5, v + 0.5], dim=-1).reshape(-1, 2).double()
    assert torch.allclose(uv, expected_uv.expand(6, -1, -1), atol=1e-6)
    # camera z of the point equals distance * z_per_distance, and the conversions invert each other
    assert torch.allclose(z, distance_to_camera_z(distance, z_per_distance).reshape(6, -1), atol=1e-8)
    assert torch.allclose(camera_z_to_distance(z.reshape(6, 36, 64), z_per_distance), distance.expand(6, -1, -1))
    # the principal ray is the optical axis: z_per_distance is at most 1 and smallest at the corners
    assert float(z_per_distance.max()) <= 1.0 and float(z_per_distance[:, 0, 0].max()) < 0.9


def test_shared_points_project_as_per_camera_points(rig_tensors):
    k, e = rig_tensors
    points = torch.randn(500, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 20.0
    uv, z = project_points(points, k, e)  # one point set for all six cameras
    uv_each, z_each = project_points(points.expand(6, -1, -1), k, e)
    assert uv.shape == (6, 500, 2) and z.shape == (6, 500)
    assert torch.allclose(uv, uv_each) and torch.allclose(z, z_each)
    # against the textbook form: camera coordinates, then the intrinsics, then the division by z
    cam = torch.einsum("nij,mj->nmi", torch.linalg.inv(e)[:, :3, :3], points) + torch.linalg.inv(e)[:, None, :3, 3]
    pix = torch.einsum("nij,nmj->nmi", k, cam)
    front = cam[..., 2] > 0.1
    assert torch.allclose(z, cam[..., 2])
    assert torch.allclose(uv[front], (pix[..., :2] / pix[..., 2:])[front])


def test_scale_intrinsics_pixel_edge_convention():
    k = torch.tensor([[100.0, 0, 50.0], [0, 100.0, 25.0], [0, 0, 1]])
    half = scale_intrinsics(k, 0.5, 0.5)
    assert torch.allclose(half, torch.tensor([[50.0, 0, 25.0], [0, 50.0, 12.5], [0, 0, 1]]))


def reference_contraction(x: float, radius: float, alpha: float = 0.8) -> float:
    return alpha * x / radius if abs(x) < radius else np.sign(x) * (1 - (1 - alpha) * radius / abs(x))


@pytest.mark.parametrize("point", [(3.0, -4.0, 1.0), (30.0, 40.0, -7.0), (-400.0, 10.0, 100.0), (0.0, 0.0, 0.0),
                                   (49.0, 0.0, 6.3), (0.0, -51.0, -6.5)])
def test_contraction_matches_formula(point):
    p = torch.tensor(point, dtype=torch.float64)
    s = contract(p, 50.0, 6.4, 0.8)
    norm = float(np.hypot(point[0], point[1]))
    s_xy = reference_contraction(norm, 50.0)
    expected_xy = np.array(point[:2]) * (s_xy / norm if norm else 0.0)
    assert np.allclose(s[:2].numpy(), expected_xy)
    assert np.isclose(float(s[2]), reference_contraction(point[2], 6.4))


def test_contraction_inverts_and_stays_in_the_cube():
    g = torch.Generator().manual_seed(0)
    points = torch.randn(5000, 3, generator=g, dtype=torch.float64) * torch.tensor([80.0, 80.0, 10.0])
    points[:100] *= 50.0  # far away points land in the outer shell
    s = contract(points, 50.0, 6.4, 0.8)
    assert float(s.abs().max()) < 1.0
    assert torch.allclose(uncontract(s, 50.0, 6.4, 0.8), points, rtol=1e-6, atol=1e-6)
    inner = (points[:, :2].norm(dim=-1) < 50.0) & (points[:, 2].abs() < 6.4)
    assert float(s[inner].abs().max()) <= 0.8 + 1e-12
