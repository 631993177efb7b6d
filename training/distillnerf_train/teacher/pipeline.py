"""``distillnerf teacher`` end to end: per scene, fit the field, cache targets per keyframe camera, report quality.

Cache: ``<out>/<sample_data_token>.npz`` with ``depth`` (camera z float32, 0 on sky), ``sky`` (bool) and per
virtual view v in left/right/up (the camera moved 1 m along -x, +x, -y of its own optical frame):
``virtual_<v>_rgb`` (HxWx3 uint8), ``virtual_<v>_depth`` (camera z float32) and ``virtual_<v>_cam_to_ego``
(4x4 float32, in the keyframe's ego frame, like the loader's ``cam_to_ego``). ``<out>/scenes/<scene>.json`` holds
the fit's figures: reconstruction PSNR at the keyframe cameras, AbsRel against LiDAR, and against exact dense
depth when the dataset has it (``DIR/gt/depth``, the synthetic world) — evaluation only, never supervision.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from dataclasses import field as default_field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from distillnerf.dataclass_config import dataclass_from_dict
from distillnerf.geometry import distance_to_camera_z, pixel_rays
from distillnerf.metrics import MeanAccumulator, depth_metrics, psnr

from ..data import VIRTUAL_VIEWS
from ..data.targets import read_npz, resize_depth
from .field import FieldConfig
from .optimise import OptimConfig, TeacherOptimiser
from .render import RenderConfig, render_image
from .scene import SceneRays, as_numpy_image, load_scene, virtual_cam_to_ego

VIRTUAL_OFFSETS = {"left": (-1.0, 0.0, 0.0), "right": (1.0, 0.0, 0.0), "up": (0.0, -1.0, 0.0)}
assert tuple(VIRTUAL_OFFSETS) == tuple(VIRTUAL_VIEWS)


@dataclass
class TeacherConfig:
    """distillnerf_train/configs/train/teacher.yaml."""

    size: tuple[int, int] = (228, 128)  # W, H of training rays and cached renders
    lidar_min: float = 1.0
    lidar_max: float = 80.0
    device: str = "cpu"
    field: FieldConfig = default_field(default_factory=FieldConfig)
    render: RenderConfig = default_field(default_factory=RenderConfig)
    optim: OptimConfig = default_field(default_factory=OptimConfig)

    @classmethod
    def from_dict(cls, data: dict, source: str = "teacher config") -> "TeacherConfig":
        """Typed and checked like every config (``distillnerf.dataclass_config``): nested sections, unknown keys
        and wrong types name the file and key."""
        return dataclass_from_dict(cls, data, source)


def evaluate_scene(scene: SceneRays, renders: dict[tuple[int, int], dict],
                   gt_dir: Path | None) -> dict:
    """Reconstruction PSNR at the keyframe cameras; depth metrics vs LiDAR and vs exact GT depth if present."""
    width, height = scene.size
    rgb_psnr, lidar_metrics, gt_metrics = MeanAccumulator(), MeanAccumulator(), MeanAccumulator()
    lidar = scene.lidar_distance.view(-1, height, width)  # ray distance, in camera order of valid cameras
    flat = 0
    for k, keyframe in enumerate(scene.keyframes):
        for cam, token in enumerate(keyframe.camera_tokens):
            if not keyframe.camera_valid[cam]:
                continue
            out = renders[(k, cam)]
            rgb_psnr.update({"psnr": psnr(out["rgb"].permute(2, 0, 1), keyframe.images[cam])})
            _, _, z_per_distance = pixel_rays(keyframe.intrinsics[cam], keyframe.cam_to_ego[cam], height, width)
            lidar_z = distance_to_camera_z(lidar[flat], z_per_distance)
            flat += 1
            if (lidar_z > 0).any():
                lidar_metrics.update(depth_metrics(out["depth"], lidar_z))
            gt = read_npz(gt_dir / f"{token}.npz", ("depth",)) if gt_dir is not None else None
            if gt is not None:
                gt_depth = torch.as_tensor(np.asarray(gt["depth"], dtype=np.float32))
                pred = torch.nn.functional.interpolate(out["depth"][None, None], size=gt_depth.shape,
                                                       mode="nearest")[0, 0]
                # Sky pixels have no GT surface (0 or inf there): depth_metrics skips them by range.
                gt_metrics.update(depth_metrics(pred, gt_depth))
    report = {"psnr": rgb_psnr.compute().get("psnr"), "lidar": lidar_metrics.compute()}
    if gt_metrics.items:
        report["gt_depth"] = gt_metrics.compute()
    return report


def cache_scene(optimiser: TeacherOptimiser, scene: SceneRays, config: TeacherConfig, out: Path,
                ) -> dict[tuple[int, int], dict]:
    """Render and write every keyframe camera's teacher targets; returns the renders of the real cameras."""
    width, height = scene.size
    renders = {}
    for k, keyframe in enumerate(scene.keyframes):
        for cam, token in enumerate(keyframe.camera_tokens):
            if not keyframe.camera_valid[cam]:
                continue
            intrinsics = keyframe.intrinsics[cam]
            real = render_image(optimiser.field, intrinsics, keyframe.cam_to_world(cam), width, height, config.render)
            renders[(k, cam)] = real
            arrays = {"depth": real["depth"].numpy().astype(np.float32), "sky": real["sky"].numpy()}
            for view, offset in VIRTUAL_OFFSETS.items():
                pose = virtual_cam_to_ego(keyframe.cam_to_ego[cam], offset)
                virtual = render_image(optimiser.field, intrinsics, keyframe.ego_to_world @ pose, width, height,
                                       config.render)
                arrays[f"virtual_{view}_rgb"] = as_numpy_image(virtual["rgb"])
                arrays[f"virtual_{view}_depth"] = virtual["depth"].numpy().astype(np.float32)
                arrays[f"virtual_{view}_cam_to_ego"] = pose.numpy().astype(np.float32)
            np.savez_compressed(out / f"{token}.npz", **arrays)
    return renders


def run_scene(data: str, version: str, scene_name: str, config: TeacherConfig, out: Path, nusc=None,
              log: Callable[[str], None] = print) -> dict:
    scene = load_scene(data, version, scene_name, config.size, config.lidar_min, config.lidar_max, nusc=nusc)
    optimiser = TeacherOptimiser(scene, config.field, config.render, config.optim, config.device)
    fit = optimiser.fit(lambda step, losses: log(f"{scene_name} step {step}: " +
                                                 ", ".join(f"{k} {v:.4f}" for k, v in losses.items())))
    out.mkdir(parents=True, exist_ok=True)
    renders = cache_scene(optimiser, scene, config, out)
    gt_dir = Path(data) / "gt" / "depth"
    report = {"scene": scene_name, "size": list(scene.size), "keyframes": len(scene.keyframes),
              "rays": int(scene.origins.shape[0]), "lidar_rays": int((scene.lidar_distance > 0).sum()), **fit,
              **evaluate_scene(scene, renders, gt_dir if gt_dir.is_dir() else None),
              "config": asdict(config)}
    (out / "scenes").mkdir(exist_ok=True)
    (out / "scenes" / f"{scene_name}.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    return report
