"""One keyframe loader for real nuScenes (any version), the synthetic world and ``nuscenes-tiny``.

Everything goes through the official nuscenes-devkit, so any dataroot the devkit reads works. One item is the six
cameras of one keyframe, resized to the model input, with poses in the keyframe's LiDAR-time ego frame, LiDAR
depth targets at render resolution and whatever optional targets are cached beside the dataroot (see
:mod:`distillnerf_train.data.targets`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from distillnerf.lidar import load_lidar_points, project_depth
from distillnerf.rig import pose_matrix

from .augment import CropBox, GeometricAugment, PhotometricAugment
from .config import DataConfig
from .files import load_image, open_nuscenes
from .geometry import camera_to_keyframe_ego, rescale_intrinsics
from .targets import VIRTUAL_VIEWS, TargetResizer, read_npz


class NuScenesKeyframes(Dataset):
    """Keyframes of a nuScenes-format dataroot as training / evaluation items.

    An item (a dict of tensors, N cameras, input H x W, render h x w):
    ``images`` [N,3,H,W] 0..1; ``intrinsics`` [N,3,3] at input size; ``cam_to_ego`` [N,4,4] camera to the
    keyframe's LiDAR-time ego frame; ``camera_valid`` [N]; ``render_intrinsics`` [N,3,3]; ``lidar_depth``
    [N,h,w] camera z in [min, max] m (0 = none); ``sky`` [N,h,w]; ``dense_depth`` [N,h,w] (teacher or exact
    depth, sky pixels = ``sky_depth``, 0 = none) with ``dense_depth_valid`` [N]; when teacher files exist
    ``virtual_rgb`` [N,V,3,H,W], ``virtual_depth`` [N,V,h,w], ``virtual_cam_to_ego`` [N,V,4,4], ``virtual_valid``
    [N,V]; ``features`` [N,F,h,w] and ``features_valid`` [N]; ``occ_semantics`` / ``occ_mask_camera``
    [200,200,16] and ``occ_valid``; with ``next_keyframe``, ``next_images``, ``next_cam_to_ego`` (in THIS
    keyframe's ego frame), ``next_intrinsics``, ``next_camera_valid`` and ``next_valid``. Plus ``sample_token``,
    ``scene_name`` and ``ego_to_global`` [4,4].
    """

    def __init__(self, config: DataConfig, nusc=None) -> None:
        self.config = config
        if not config.dataroot:
            raise ValueError("data config: dataroot is empty")
        self.root = Path(config.dataroot)
        self.nusc = nusc if nusc is not None else open_nuscenes(self.root, config.version)
        self.teacher_dir = Path(config.teacher_dir) if config.teacher_dir else self.root / "teacher"
        self.features_dir = Path(config.features_dir) if config.features_dir else self.root / "features"
        self.gt_dir = Path(config.gt_dir) if config.gt_dir else self.root / "gt"
        scenes = self.nusc.scene
        if config.scenes is not None:
            names = {s["name"] for s in scenes}
            missing = sorted(set(config.scenes) - names)
            if missing:
                raise ValueError(f"{self.root}: scene(s) {', '.join(missing)} not in {config.version}")
            scenes = [s for s in scenes if s["name"] in set(config.scenes)]
        self.samples: list[tuple[str, str]] = []  # (sample token, scene name), scene order then time order
        for scene in scenes:
            token = scene["first_sample_token"]
            while token:
                self.samples.append((token, scene["name"]))
                token = self.nusc.get("sample", token)["next"]
        if not self.samples:
            raise ValueError(f"{self.root}: no keyframes in {config.version}" +
                             (f" for scenes {config.scenes}" if config.scenes else ""))
        self.has_teacher = config.teacher and self.teacher_dir.is_dir()
        self.has_features = config.features and self.features_dir.is_dir()
        self.has_occupancy = config.occupancy and (self.gt_dir / "occ3d").is_dir()

    def __len__(self) -> int:
        return len(self.samples)

    # -- poses ---------------------------------------------------------------------------------------------
    def _ego_to_global(self, sample_data: dict) -> np.ndarray:
        pose = self.nusc.get("ego_pose", sample_data["ego_pose_token"])
        return pose_matrix(pose["translation"], pose["rotation"])

    def _sensor_to_ego(self, sample_data: dict) -> np.ndarray:
        calib = self.nusc.get("calibrated_sensor", sample_data["calibrated_sensor_token"])
        return pose_matrix(calib["translation"], calib["rotation"])

    def keyframe_ego_to_global(self, sample: dict) -> np.ndarray:
        """Ego pose at the keyframe's LiDAR timestamp (the first camera's when there is no LiDAR)."""
        data = sample["data"]
        channel = self.config.lidar_channel if self.config.lidar_channel in data else None
        if channel is None:
            channel = next((c for c in self.config.cameras if c in data), None)
        if channel is None:
            raise ValueError(f"sample {sample['token']}: none of the configured sensors is present")
        return self._ego_to_global(self.nusc.get("sample_data", data[channel]))

    # -- cameras ---------------------------------------------------------------------------------------------
    def _cameras(self, sample: dict, reference_ego_to_global: np.ndarray,
                 crops: list[CropBox | None] | None = None) -> dict:
        width, height = self.config.input_size
        n = len(self.config.cameras)
        images = torch.zeros(n, 3, height, width)
        intrinsics = torch.zeros(n, 3, 3, dtype=torch.float64)
        cam_to_ego = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)  # float32 only in the item
        valid = torch.zeros(n, dtype=torch.bool)
        tokens: list[str] = []
        for i, channel in enumerate(self.config.cameras):
            token = sample["data"].get(channel, "")
            tokens.append(token)
            if not token:
                intrinsics[i] = torch.eye(3)
                continue
            sd = self.nusc.get("sample_data", token)
            calib = self.nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            if not calib.get("camera_intrinsic"):
                raise ValueError(f"{channel} ({token}): calibrated_sensor has no camera_intrinsic")
            crop = crops[i] if crops else None
            images[i], original = load_image(self.root / sd["filename"], self.config.input_size, crop)
            matrix = rescale_intrinsics(np.asarray(calib["camera_intrinsic"]), original, self.config.input_size)
            intrinsics[i] = torch.from_numpy(crop.intrinsics(matrix, self.config.input_size) if crop else matrix)
            cam_to_ego[i] = torch.from_numpy(camera_to_keyframe_ego(
                reference_ego_to_global, self._ego_to_global(sd), self._sensor_to_ego(sd)))
            valid[i] = True
        return {"images": images, "intrinsics": intrinsics, "cam_to_ego": cam_to_ego, "camera_valid": valid,
                "tokens": tokens}

    def _lidar_depth(self, sample: dict, keyframe_ego_to_global: np.ndarray, cams: dict,
                     render_intrinsics: torch.Tensor) -> torch.Tensor:
        n = len(self.config.cameras)
        w, h = self.config.render_size
        depth = torch.zeros(n, h, w)
        token = sample["data"].get(self.config.lidar_channel)
        if not token:
            return depth
        sd = self.nusc.get("sample_data", token)
        points = load_lidar_points(self.root / sd["filename"])
        # LiDAR frame -> LiDAR-time ego frame, which is the keyframe ego frame by definition.
        lidar_to_ego = self._sensor_to_ego(sd)
        points_ego = points @ lidar_to_ego[:3, :3].T + lidar_to_ego[:3, 3]
        for i in range(n):
            if cams["camera_valid"][i]:
                depth[i] = torch.from_numpy(project_depth(
                    points_ego, cams["cam_to_ego"][i].numpy(), render_intrinsics[i].numpy(),
                    self.config.render_size, self.config.lidar_min_depth, self.config.lidar_max_depth))
        return depth

    # -- optional targets --------------------------------------------------------------------------------------
    def _dense_and_virtual(self, tokens: list[str], item: dict, crops: list[CropBox | None]) -> None:
        cfg = self.config
        n, (w, h), (W, H) = len(tokens), cfg.render_size, cfg.input_size
        dense = torch.zeros(n, h, w)
        dense_valid = torch.zeros(n, dtype=torch.bool)
        sky = torch.zeros(n, h, w, dtype=torch.bool)
        v = len(VIRTUAL_VIEWS)
        virtual_rgb, virtual_depth = torch.zeros(n, v, 3, H, W), torch.zeros(n, v, h, w)
        virtual_pose = torch.eye(4).repeat(n, v, 1, 1)
        virtual_valid = torch.zeros(n, v, dtype=torch.bool)
        for i, token in enumerate(tokens):
            if not token:
                continue
            resize = TargetResizer(crops[i])
            teacher = read_npz(self.teacher_dir / f"{token}.npz", ("depth",)) if self.has_teacher else None
            gt = None
            if cfg.dense_depth in ("gt", "auto") and (cfg.dense_depth == "gt" or teacher is None):
                gt = read_npz(self.gt_dir / "depth" / f"{token}.npz", ("depth",))
            source = teacher if cfg.dense_depth in ("teacher", "auto") and teacher is not None else gt
            if cfg.dense_depth != "none" and source is not None:
                dense[i] = resize.depth(source["depth"], cfg.render_size)
                dense_valid[i] = True
            for arrays in (teacher, gt):
                if arrays is not None and "sky" in arrays:
                    sky[i] |= resize.mask(arrays["sky"], cfg.render_size)
            if teacher is not None:
                for j, view in enumerate(VIRTUAL_VIEWS):
                    keys = (f"virtual_{view}_rgb", f"virtual_{view}_depth", f"virtual_{view}_cam_to_ego")
                    if all(k in teacher for k in keys):
                        virtual_rgb[i, j] = resize.image(teacher[keys[0]], cfg.input_size)
                        virtual_depth[i, j] = resize.depth(teacher[keys[1]], cfg.render_size)
                        virtual_pose[i, j] = torch.as_tensor(np.asarray(teacher[keys[2]], dtype=np.float32))
                        virtual_valid[i, j] = True
        # Sky pixels are far, not unknown: give them the paper's sky depth so depth losses push them out.
        dense = torch.where(sky, torch.full_like(dense, cfg.sky_depth), dense)
        dense_valid |= sky.flatten(1).any(1)
        item.update(dense_depth=dense, dense_depth_valid=dense_valid, sky=sky)
        if self.has_teacher:
            item.update(virtual_rgb=virtual_rgb, virtual_depth=virtual_depth, virtual_cam_to_ego=virtual_pose,
                        virtual_valid=virtual_valid)

    def _features(self, tokens: list[str], item: dict, crops: list[CropBox | None]) -> None:
        n, (w, h) = len(tokens), self.config.render_size
        features = torch.zeros(n, self.config.feature_dim, h, w)
        valid = torch.zeros(n, dtype=torch.bool)
        for i, token in enumerate(tokens):
            arrays = read_npz(self.features_dir / f"{token}.npz", ("features",)) if token else None
            if arrays is None:
                continue
            target = TargetResizer(crops[i]).features(arrays["features"], self.config.render_size)
            if target.shape[0] != self.config.feature_dim:
                raise ValueError(f"{self.features_dir / token}.npz: {target.shape[0]} feature channels, the config "
                                 f"expects {self.config.feature_dim}")
            features[i], valid[i] = target, True
        item.update(features=features, features_valid=valid)

    def _occupancy(self, sample_token: str, scene_name: str, item: dict) -> None:
        arrays = read_npz(self.gt_dir / "occ3d" / scene_name / sample_token / "labels.npz",
                          ("semantics", "mask_camera"))
        if arrays is None:
            item.update(occ_semantics=torch.full((200, 200, 16), 17, dtype=torch.uint8),
                        occ_mask_camera=torch.zeros(200, 200, 16, dtype=torch.uint8), occ_valid=torch.tensor(False))
            return
        item.update(occ_semantics=torch.from_numpy(arrays["semantics"].astype(np.uint8)),
                    occ_mask_camera=torch.from_numpy(arrays["mask_camera"].astype(np.uint8)),
                    occ_valid=torch.tensor(True))

    def _next_keyframe(self, sample: dict, keyframe_ego_to_global: np.ndarray, item: dict) -> None:
        """The next keyframe's cameras posed in this keyframe's ego frame (what novel-view evaluation renders)."""
        if sample["next"]:
            cams = self._cameras(self.nusc.get("sample", sample["next"]), keyframe_ego_to_global)
            valid = torch.tensor(True)
        else:
            cams = {k: torch.zeros_like(v) for k, v in item.items()
                    if k in ("images", "intrinsics", "cam_to_ego", "camera_valid")}
            valid = torch.tensor(False)
        item.update(next_images=cams["images"], next_intrinsics=cams["intrinsics"].float(),
                    next_cam_to_ego=cams["cam_to_ego"].float(), next_camera_valid=cams["camera_valid"], next_valid=valid)

    def _draw_crops(self) -> list[CropBox | None]:
        """One crop (or none) per camera; drawn before the photometric draws, from the same saved RNG."""
        if self.config.geometric_augment <= 0:
            return [None] * len(self.config.cameras)
        augment = GeometricAugment(self.config.geometric_augment, self.config.crop_min_scale)
        return [augment.draw() for _ in self.config.cameras]

    def __getitem__(self, index: int) -> dict:
        sample_token, scene_name = self.samples[index]
        sample = self.nusc.get("sample", sample_token)
        ego_to_global = self.keyframe_ego_to_global(sample)
        crops = self._draw_crops()
        cams = self._cameras(sample, ego_to_global, crops)
        render_intrinsics = torch.from_numpy(np.stack([
            rescale_intrinsics(k.numpy(), self.config.input_size, self.config.render_size)
            for k in cams["intrinsics"]]))
        item = {k: cams[k] for k in ("images", "intrinsics", "cam_to_ego", "camera_valid")}
        if self.config.photometric_augment > 0:
            item["images"] = PhotometricAugment(probability=self.config.photometric_augment)(item["images"])
        item.update(render_intrinsics=render_intrinsics, sample_token=sample_token, scene_name=scene_name,
                    ego_to_global=torch.from_numpy(ego_to_global),
                    lidar_depth=self._lidar_depth(sample, ego_to_global, cams, render_intrinsics))
        for key in ("intrinsics", "cam_to_ego", "render_intrinsics"):
            item[key] = item[key].float()
        self._dense_and_virtual(cams["tokens"], item, crops)
        if self.has_features:
            self._features(cams["tokens"], item, crops)
        if self.has_occupancy:
            self._occupancy(sample_token, scene_name, item)
        if self.config.next_keyframe:
            self._next_keyframe(sample, ego_to_global, item)
        return item
