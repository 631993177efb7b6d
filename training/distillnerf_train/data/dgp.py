"""Keyframes of a DGP dataset (TRI's layout, as DDAD ships): the cameras of each sample and their LiDAR depth, for
scoring depth on a second real rig.

The model is trained on the nuScenes rig's six camera slots; a DGP sample's cameras fill the slots in the rig
order (front-left, front, front-right, back-right, back, back-left, by the direction each camera looks) and
missing slots are invalid, as a dropped camera. The ego frame is the LiDAR's (DDAD's LiDAR is the vehicle frame);
each camera's pose in it comes from the datum poses (sensor to world) at the camera's and the LiDAR's own
timestamps, so ego motion between the two is accounted for. Items carry the keys ``distillnerf eval`` reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from distillnerf.lidar import project_depth
from distillnerf.rig import NUSCENES_CAMERAS, pose_matrix, quaternion_to_matrix

from .files import load_image

SCENE_DATASET = "scene_dataset_v1.0.json"


def is_dgp_dataset(root: str | Path) -> bool:
    return (Path(root) / SCENE_DATASET).is_file()


def _pose(record: dict) -> np.ndarray:
    q, t = record["rotation"], record["translation"]
    return pose_matrix([t["x"], t["y"], t["z"]], [q["qw"], q["qx"], q["qy"], q["qz"]])


def _heading(cam_to_ego: np.ndarray) -> float:
    """Clockwise angle from front-left (+45 deg) of the optical axis: the nuScenes rig's slot order."""
    forward = cam_to_ego[:3, 2]
    return (np.pi / 4 - np.arctan2(forward[1], forward[0]) + 0.3) % (2 * np.pi)


class DGPKeyframes(Dataset):
    def __init__(self, root: str | Path, input_size: tuple[int, int], render_size: tuple[int, int],
                 lidar_range: tuple[float, float] = (1.0, 80.0), slots: int = len(NUSCENES_CAMERAS)) -> None:
        self.root = Path(root)
        if not is_dgp_dataset(self.root):
            raise FileNotFoundError(f"{self.root}: no {SCENE_DATASET} (not a DGP dataset)")
        self.input_size, self.render_size, self.lidar_range, self.slots = input_size, render_size, lidar_range, slots
        dataset = json.loads((self.root / SCENE_DATASET).read_text())
        scene_files = sorted({f for split in dataset["scene_splits"].values() for f in split["filenames"]})
        self.samples: list[tuple[Path, dict, dict]] = []  # (scene folder, sample, datum by key)
        for name in scene_files:
            scene = json.loads((self.root / name).read_text())
            data = {datum["key"]: datum for datum in scene["data"]}
            for sample in scene["samples"]:
                self.samples.append(((self.root / name).parent, sample, data))
        if not self.samples:
            raise ValueError(f"{self.root}: the DGP dataset lists no samples")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        folder, sample, data = self.samples[index]
        datums = [data[key] for key in sample["datum_keys"]]
        lidar = next((d for d in datums if "point_cloud" in d["datum"]), None)
        if lidar is None:
            raise ValueError(f"{folder}: sample {sample['id']['index']} has no point cloud")
        calibration = json.loads(next((folder / "calibration").glob(f"{sample['calibration_key']}.json")).read_text())
        intrinsics_by_name = dict(zip(calibration["names"], calibration["intrinsics"]))
        world_to_ego = np.linalg.inv(_pose(lidar["datum"]["point_cloud"]["pose"]))
        cameras = []
        for datum in datums:
            if "image" not in datum["datum"]:
                continue
            image = datum["datum"]["image"]
            cam_to_ego = world_to_ego @ _pose(image["pose"])
            k = intrinsics_by_name[datum["id"]["name"]]
            intrinsics = np.array([[k["fx"], k.get("skew", 0.0), k["cx"]], [0.0, k["fy"], k["cy"]], [0, 0, 1.0]])
            cameras.append((_heading(cam_to_ego), folder / image["filename"], intrinsics, cam_to_ego,
                            (int(image["width"]), int(image["height"]))))
        cameras.sort(key=lambda c: c[0])
        if len(cameras) > self.slots:
            raise ValueError(f"{folder}: {len(cameras)} cameras, the model has {self.slots} slots")
        (w, h), (rw, rh) = self.input_size, self.render_size
        n = self.slots
        images, k_input = torch.zeros(n, 3, h, w), torch.eye(3).repeat(n, 1, 1)
        poses, valid = torch.eye(4).repeat(n, 1, 1), torch.zeros(n, dtype=torch.bool)
        lidar_depth = torch.zeros(n, rh, rw)
        points = np.load(folder / lidar["datum"]["point_cloud"]["filename"])["data"][:, :3].astype(np.float64)
        for slot, (_, file, intrinsics, cam_to_ego, size) in enumerate(cameras):
            images[slot], original = load_image(file, (w, h))
            scale = np.diag([w / original[0], h / original[1], 1.0])
            k_input[slot] = torch.from_numpy(scale @ intrinsics)
            poses[slot] = torch.from_numpy(cam_to_ego)
            valid[slot] = True
            render_k = np.diag([rw / original[0], rh / original[1], 1.0]) @ intrinsics
            lidar_depth[slot] = torch.from_numpy(project_depth(points, cam_to_ego, render_k, (rw, rh),
                                                               *self.lidar_range))
        return {"images": images, "intrinsics": k_input.float(), "cam_to_ego": poses.float(), "camera_valid": valid,
                "lidar_depth": lidar_depth, "dense_depth": torch.zeros(n, rh, rw),
                "dense_depth_valid": torch.zeros(n, dtype=torch.bool), "next_valid": torch.tensor(False),
                "sample_token": f"{folder.name}/{sample['id']['index']}", "scene_name": folder.name}


__all__ = ["DGPKeyframes", "is_dgp_dataset", "quaternion_to_matrix"]
