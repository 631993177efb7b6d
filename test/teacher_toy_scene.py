"""A hand-made analytic street for teacher tests: checkered ground, one box, a sky; exact depth per pixel."""

from __future__ import annotations

import math

import torch

from distillnerf.geometry import distance_to_camera_z, pixel_rays
from distillnerf_train.teacher.scene import Keyframe, build_rays

SKY = torch.tensor([0.55, 0.7, 0.95])
BOX_CENTRE, BOX_HALF, BOX_RGB = torch.tensor([9.0, 0.0, 1.0]), torch.tensor([1.5, 1.0, 1.0]), torch.tensor([0.9, 0.2, 0.1])
BASE = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # optical camera looking along ego +x


def camera_to_ego(yaw_deg: float, height: float = 1.5) -> torch.Tensor:
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    yaw = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    pose = torch.eye(4)
    pose[:3, :3] = yaw @ BASE
    pose[2, 3] = height
    return pose


def cast(origins: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ray distance (inf on sky) and colour of the toy world."""
    t_ground = torch.where(directions[:, 2] < -1e-6, -origins[:, 2] / directions[:, 2], torch.full_like(origins[:, 0], math.inf))
    inv = 1.0 / torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    t0, t1 = (BOX_CENTRE - BOX_HALF - origins) * inv, (BOX_CENTRE + BOX_HALF - origins) * inv
    near, far = torch.minimum(t0, t1).max(dim=1).values, torch.maximum(t0, t1).min(dim=1).values
    t_box = torch.where((far >= near) & (near > 0), near, torch.full_like(near, math.inf))
    t = torch.minimum(t_ground, t_box)
    hit = origins + directions * t_ground.clamp_max(1e6)[:, None]
    checker = ((torch.floor(hit[:, 0] / 2) + torch.floor(hit[:, 1] / 2)) % 2)[:, None]
    ground = checker * torch.tensor([0.8, 0.8, 0.75]) + (1 - checker) * torch.tensor([0.25, 0.3, 0.25])
    rgb = torch.where((t_box < t_ground)[:, None], BOX_RGB.expand_as(ground), ground)
    rgb = torch.where(torch.isinf(t)[:, None], SKY.expand_as(ground), rgb)
    return t, rgb


def toy_scene(size=(32, 24), frames: int = 3, lidar_stride: int = 3, lidar_max: float = 40.0):
    """SceneRays of the toy world plus exact camera-z depth per keyframe camera ([K][N,H,W], 0 on sky)."""
    width, height = size
    intrinsics = torch.tensor([[width / 2, 0, width / 2], [0, width / 2, height / 2], [0, 0, 1.0]])
    cams = torch.stack([camera_to_ego(yaw) for yaw in (0, 90, 180, 270)])
    keyframes, lidar, exact = [], [], []
    for k in range(frames):
        ego_to_world = torch.eye(4)
        ego_to_world[0, 3] = 1.0 * k
        images, depths = [], []
        for cam in cams:
            o, d, zpd = pixel_rays(intrinsics, ego_to_world @ cam, height, width)
            t, rgb = cast(o.reshape(-1, 3), d.reshape(-1, 3))
            z = distance_to_camera_z(t.view(height, width), zpd)
            depths.append(torch.where(torch.isinf(z), torch.zeros_like(z), z))
            images.append(rgb.view(height, width, 3).permute(2, 0, 1))
        depth = torch.stack(depths)
        keyframes.append(Keyframe(f"sample{k}", [f"cam{k}_{i}" for i in range(len(cams))],
                                  intrinsics.expand(len(cams), 3, 3).clone(), cams.clone(), ego_to_world,
                                  torch.ones(len(cams), dtype=torch.bool), torch.stack(images)))
        sparse = torch.zeros_like(depth)
        sparse[:, ::lidar_stride, ::lidar_stride] = depth[:, ::lidar_stride, ::lidar_stride]
        lidar.append(torch.where((sparse > 1.0) & (sparse < lidar_max), sparse, torch.zeros_like(sparse)))
        exact.append(depth)
    return build_rays("toy", size, keyframes, lidar), exact
