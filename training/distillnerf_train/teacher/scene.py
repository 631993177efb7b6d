"""One driving sequence as posed rays for the teacher: every keyframe, every camera, LiDAR depth per pixel.

Reading goes through the shared keyframe loader (:mod:`distillnerf_train.data`), so cameras are posed in their
keyframe's LiDAR-time ego frame and LiDAR is projected per camera (camera z, min-pooled). The teacher's world
frame is the first keyframe's ego frame; keyframe k's ego frame maps into it by ``ego_to_world[k]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from distillnerf.geometry import camera_z_to_distance, pixel_rays

from ..data import DataConfig, NuScenesKeyframes


@dataclass
class Keyframe:
    sample_token: str
    camera_tokens: list[str]  # sample_data token per camera ('' when missing)
    intrinsics: torch.Tensor  # [N,3,3] at the teacher's image size
    cam_to_ego: torch.Tensor  # [N,4,4] in this keyframe's ego frame
    ego_to_world: torch.Tensor  # [4,4]
    camera_valid: torch.Tensor  # [N] bool
    images: torch.Tensor  # [N,3,H,W] in [0,1]

    def cam_to_world(self, index: int) -> torch.Tensor:
        return self.ego_to_world @ self.cam_to_ego[index]


@dataclass
class SceneRays:
    """Flattened training rays of a scene (world frame) and the keyframes they came from."""

    name: str
    size: tuple[int, int]  # W, H
    keyframes: list[Keyframe]
    origins: torch.Tensor  # [P,3]
    directions: torch.Tensor  # [P,3] unit
    rgb: torch.Tensor  # [P,3]
    lidar_distance: torch.Tensor  # [P] metres along the ray, 0 = no LiDAR return

    @property
    def camera_positions(self) -> torch.Tensor:
        return torch.stack([kf.cam_to_world(i)[:3, 3] for kf in self.keyframes
                            for i in range(len(kf.camera_tokens)) if kf.camera_valid[i]])


def scene_names(dataroot: str, version: str, nusc=None) -> list[str]:
    from ..data import open_nuscenes

    nusc = nusc if nusc is not None else open_nuscenes(dataroot, version)
    return sorted(scene["name"] for scene in nusc.scene)


def shard(names: list[str], index: int, count: int) -> list[str]:
    """Deterministic share ``index`` of ``count`` (round-robin over the sorted names)."""
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: need 0 <= i < n")
    return sorted(names)[index::count]


def load_scene(dataroot: str, version: str, scene: str, size: tuple[int, int], lidar_min: float, lidar_max: float,
               nusc=None) -> SceneRays:
    dataset = NuScenesKeyframes(DataConfig(
        dataroot=dataroot, version=version, scenes=[scene], input_size=tuple(size), render_size=tuple(size),
        lidar_min_depth=lidar_min, lidar_max_depth=lidar_max, dense_depth="none", teacher=False, features=False,
        occupancy=False), nusc=nusc)
    keyframes, lidar_depths = [], []
    world_from_global = None
    for index in range(len(dataset)):
        item = dataset[index]
        ego_to_global = item["ego_to_global"].double()
        if world_from_global is None:
            world_from_global = torch.linalg.inv(ego_to_global)
        sample = dataset.nusc.get("sample", item["sample_token"])
        tokens = [sample["data"].get(channel, "") for channel in dataset.config.cameras]
        keyframes.append(Keyframe(item["sample_token"], tokens, item["intrinsics"], item["cam_to_ego"],
                                  (world_from_global @ ego_to_global).float(), item["camera_valid"], item["images"]))
        lidar_depths.append(item["lidar_depth"])
    return build_rays(scene, tuple(size), keyframes, lidar_depths)


def build_rays(name: str, size: tuple[int, int], keyframes: list[Keyframe], lidar_depths: list[torch.Tensor],
               ) -> SceneRays:
    """Flatten keyframes into world-frame rays; ``lidar_depths[k]`` is [N,H,W] camera z (0 = no return)."""
    width, height = size
    origins, directions, colours, lidar = [], [], [], []
    for keyframe, lidar_depth in zip(keyframes, lidar_depths):
        for cam in range(len(keyframe.camera_tokens)):
            if not keyframe.camera_valid[cam]:
                continue
            o, d, z_per_distance = pixel_rays(keyframe.intrinsics[cam], keyframe.cam_to_world(cam), height, width)
            origins.append(o.reshape(-1, 3))
            directions.append(d.reshape(-1, 3))
            colours.append(keyframe.images[cam].permute(1, 2, 0).reshape(-1, 3))
            lidar.append(camera_z_to_distance(lidar_depth[cam], z_per_distance).reshape(-1))
    if not origins:
        raise ValueError(f"scene {name}: no camera images")
    return SceneRays(name, (width, height), keyframes, torch.cat(origins), torch.cat(directions),
                     torch.cat(colours), torch.cat(lidar))


def virtual_cam_to_ego(cam_to_ego: torch.Tensor, offset_camera: tuple[float, float, float]) -> torch.Tensor:
    """The same camera moved by ``offset_camera`` metres in its own optical frame (x right, y down, z forward)."""
    shift = torch.eye(4, dtype=cam_to_ego.dtype)
    shift[:3, 3] = torch.tensor(offset_camera, dtype=cam_to_ego.dtype)
    return cam_to_ego @ shift


def as_numpy_image(rgb: torch.Tensor) -> np.ndarray:
    """[H,W,3] float in [0,1] -> uint8."""
    return (rgb.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
