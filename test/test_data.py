"""The keyframe loader on real nuScenes frames: poses and LiDAR targets against the devkit, optional targets,
clear errors for missing or corrupt data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from distillnerf.rig import NUSCENES_CAMERAS, pose_matrix
from distillnerf_train.data import DataConfig, NuScenesKeyframes
from distillnerf_train.data.targets import resize_depth

INPUT, RENDER = (114, 64), (57, 32)


def _config(root, **kw) -> DataConfig:
    return DataConfig(dataroot=str(root), version="v1.0-tiny", input_size=INPUT, render_size=RENDER, **kw)


@pytest.fixture(scope="module")
def tiny_dataset(nuscenes_tiny):
    return NuScenesKeyframes(_config(nuscenes_tiny, next_keyframe=True))


def test_item_shapes_and_poses_match_devkit(tiny_dataset):
    ds, nusc = tiny_dataset, tiny_dataset.nusc
    assert len(ds) == 2
    item = ds[0]
    n = len(NUSCENES_CAMERAS)
    assert item["images"].shape == (n, 3, INPUT[1], INPUT[0]) and item["camera_valid"].all()
    assert 0.0 <= item["images"].min() and item["images"].max() <= 1.0 and item["images"].std() > 0.05
    assert item["lidar_depth"].shape == (n, RENDER[1], RENDER[0])
    sample = nusc.get("sample", item["sample_token"])
    lidar_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    pose = nusc.get("ego_pose", lidar_sd["ego_pose_token"])
    key = pose_matrix(pose["translation"], pose["rotation"])
    for i, channel in enumerate(NUSCENES_CAMERAS):
        sd = nusc.get("sample_data", sample["data"][channel])
        cal = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        cam_pose = nusc.get("ego_pose", sd["ego_pose_token"])
        expected = np.linalg.inv(key) @ pose_matrix(cam_pose["translation"], cam_pose["rotation"]) @ pose_matrix(
            cal["translation"], cal["rotation"])
        np.testing.assert_allclose(item["cam_to_ego"][i].numpy(), expected, atol=1e-4)
        k = np.asarray(cal["camera_intrinsic"])
        np.testing.assert_allclose(item["intrinsics"][i, 0, 0].item(), k[0, 0] * INPUT[0] / 1600, rtol=1e-5)
        np.testing.assert_allclose(item["render_intrinsics"][i, 1, 2].item(), k[1, 2] * RENDER[1] / 900, rtol=1e-5)
    # moving ego: camera-time poses differ from the calibrated extrinsics by the ego motion
    assert not np.allclose(item["cam_to_ego"][1, :3, 3].numpy(), [1.70079, 0.01594, 1.51095], atol=0.05)
    assert item["next_valid"].item() is False  # nuscenes-tiny scenes hold one keyframe each
    assert item["dense_depth_valid"].sum() == 0 and not item["sky"].any()


def test_lidar_depth_matches_devkit_projection(tiny_dataset):
    ds, nusc = tiny_dataset, tiny_dataset.nusc
    item = ds[1]
    sample = nusc.get("sample", item["sample_token"])
    checked = 0
    for i, channel in enumerate(NUSCENES_CAMERAS[:3]):
        points, depths, _ = nusc.explorer.map_pointcloud_to_image(sample["data"]["LIDAR_TOP"], sample["data"][channel])
        keep = depths <= 80.0
        u = np.floor(points[0, keep] * RENDER[0] / 1600).astype(int)
        v = np.floor(points[1, keep] * RENDER[1] / 900).astype(int)
        reference = np.full((RENDER[1], RENDER[0]), np.inf)
        np.minimum.at(reference, (v, u), depths[keep])
        ours = item["lidar_depth"][i].numpy()
        both = np.isfinite(reference) & (ours > 0)
        assert both.sum() > 0.9 * np.isfinite(reference).sum() > 500
        both[[0, -1], :] = both[:, [0, -1]] = False  # the devkit drops points on a 1-pixel border
        close = np.isclose(ours[both], reference[both], rtol=1e-4, atol=1e-3)
        # the devkit projects in float32, which may move a point sitting on a pixel edge
        assert close.mean() > 0.995, np.c_[ours[both][~close], reference[both][~close]]
        assert ours.max() <= 80.0 and ours[ours > 0].min() >= 1.0
        checked += 1
    assert checked == 3


def test_optional_targets(tmp_path, nuscenes_tiny, tiny_dataset):
    nusc = tiny_dataset.nusc
    sample = nusc.get("sample", tiny_dataset.samples[0][0])
    token = sample["data"]["CAM_FRONT"]
    teacher, features, gt = tmp_path / "teacher", tmp_path / "features", tmp_path / "gt"
    for d in (teacher, features, gt / "depth"):
        d.mkdir(parents=True)
    depth = np.full((RENDER[1] * 2, RENDER[0] * 2), 20.0, dtype=np.float32)
    depth[0, 0] = 5.0  # min-pooling keeps the near surface
    sky = np.zeros_like(depth, dtype=bool)
    sky[:8] = True
    pose = np.eye(4, dtype=np.float32)
    pose[0, 3] = -1.0
    np.savez(teacher / f"{token}.npz", depth=depth, sky=sky,
             virtual_left_rgb=np.full((50, 80, 3), 255, np.uint8), virtual_left_depth=depth,
             virtual_left_cam_to_ego=pose)
    np.savez(features / f"{token}.npz", features=np.full((8, 10, 12), 0.5, np.float16))
    np.savez(gt / "depth" / f"{token}.npz", depth=np.full((900, 1600), 7.0, np.float32))
    cfg = _config(nuscenes_tiny, teacher_dir=str(teacher), features_dir=str(features), gt_dir=str(gt),
                  feature_dim=8)
    ds = NuScenesKeyframes(cfg, nusc=nusc)
    item = ds[0]
    i = NUSCENES_CAMERAS.index("CAM_FRONT")
    assert item["dense_depth_valid"].tolist() == [c == "CAM_FRONT" for c in NUSCENES_CAMERAS]
    assert item["dense_depth"][i, 0, 0] == 115.0  # sky row
    assert item["sky"][i, :4].all() and not item["sky"][i, 4:].any()
    assert item["dense_depth"][i, 10, 0] == 20.0
    assert item["virtual_valid"][i].tolist() == [True, False, False]
    assert item["virtual_rgb"][i, 0].min() == 1.0 and item["virtual_cam_to_ego"][i, 0, 0, 3] == -1.0
    assert item["features"].shape == (6, 8, RENDER[1], RENDER[0]) and item["features_valid"].sum() == 1
    assert torch.allclose(item["features"][i], torch.tensor(0.5))
    gt_item = NuScenesKeyframes(_config(nuscenes_tiny, gt_dir=str(gt), dense_depth="gt", teacher=False),
                                nusc=nusc)[0]
    assert gt_item["dense_depth"][i].unique().tolist() == [7.0]

    np.testing.assert_array_equal(resize_depth(depth, RENDER)[0, 0].item(), 5.0)
    (teacher / f"{token}.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="corrupt target"):
        ds[0]


def _linked_root(tmp_path: Path, source: Path) -> Path:
    """A dataroot of symlinks to the shared frames, so single files can be replaced without copying data."""
    root = tmp_path / "root"
    (root / "samples").mkdir(parents=True)
    os.symlink(source / "v1.0-tiny", root / "v1.0-tiny")
    for sensor in (source / "samples").iterdir():
        (root / "samples" / sensor.name).mkdir()
        for f in sensor.iterdir():
            os.symlink(f, root / "samples" / sensor.name / f.name)
    return root


def test_clear_errors(tmp_path, nuscenes_tiny):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        NuScenesKeyframes(_config(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="v1.0-trainval"):
        NuScenesKeyframes(DataConfig(dataroot=str(nuscenes_tiny)))
    with pytest.raises(ValueError, match="unknown key"):
        DataConfig.from_dict({"dataroot": "x", "imput_size": [1, 2]})
    root = _linked_root(tmp_path, nuscenes_tiny)
    ds = NuScenesKeyframes(_config(root))
    with pytest.raises(ValueError, match="scene"):
        NuScenesKeyframes(_config(root, scenes=["scene-9999"]), nusc=ds.nusc)
    def file_of(index: int, channel: str) -> Path:
        sample = ds.nusc.get("sample", ds.samples[index][0])
        return root / ds.nusc.get("sample_data", sample["data"][channel])["filename"]

    lidar, image = file_of(0, "LIDAR_TOP"), file_of(1, "CAM_BACK")
    for path, content in ((lidar, b"\0" * 7), (image, b"garbage")):
        path.unlink()
        path.write_bytes(content)
    with pytest.raises(ValueError, match="corrupt LiDAR"):
        ds[0]
    with pytest.raises(ValueError, match="corrupt image"):
        ds[1]
    image.unlink()
    with pytest.raises(FileNotFoundError, match="camera image missing"):
        ds[1]


def test_synthetic_world_lidar_agrees_with_exact_depth(tmp_path):
    """On the synthetic world (moving ego, camera timestamps after the LiDAR), LiDAR targets projected with the
    camera-time poses land on pixels whose exact rendered depth agrees; sky gets the sky depth; occupancy and
    the next keyframe load."""
    synth = pytest.importorskip("distillnerf_train.synth", reason="the synthetic world is not available")
    from distillnerf.metrics import depth_metrics

    synth.generate_dataset(tmp_path, scenes=1, frames=2, seed=1, size=(64, 36))
    ds = NuScenesKeyframes(DataConfig(dataroot=str(tmp_path), version="v1.0-synth", input_size=(64, 36),
                                      render_size=(32, 18), next_keyframe=True))
    assert len(ds) == 2
    item = ds[0]
    lidar, dense = item["lidar_depth"], item["dense_depth"]
    both = (lidar > 0) & (dense > 0) & ~item["sky"]
    assert both.sum() > 500
    m = depth_metrics(lidar[both], dense[both])
    assert m["abs_rel"] < 0.06 and m["d1"] > 0.95, m
    assert item["sky"].any() and (dense[item["sky"]] == 115.0).all()
    assert item["dense_depth_valid"].all() and item["occ_valid"] and item["next_valid"]
    assert item["occ_semantics"].shape == (200, 200, 16) and item["occ_mask_camera"].any()
    # the next keyframe's cameras are ahead of this keyframe's (the ego drives forward)
    assert not torch.allclose(item["next_cam_to_ego"][:, :3, 3], item["cam_to_ego"][:, :3, 3], atol=0.1)
    assert ds[1]["next_valid"].item() is False


def test_photometric_augmentation_changes_pixels_only_and_repeats_with_the_rng():
    from distillnerf_train.data.augment import PhotometricAugment, gaussian_blur

    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 32, 48, generator=g)
    augment = PhotometricAugment(probability=1.0)
    torch.manual_seed(5)
    first = augment(images)
    torch.manual_seed(5)
    again = augment(images)
    assert torch.equal(first, again)  # the trainer's saved RNG state reproduces it on resume
    assert first.shape == images.shape and float(first.min()) >= 0 and float(first.max()) <= 1
    assert float((first - images).abs().mean()) > 0.01
    assert torch.equal(PhotometricAugment(probability=0.0)(images), images)
    flat = torch.full((3, 9, 9), 0.5)
    assert torch.allclose(gaussian_blur(flat, 1.0), flat, atol=1e-6)  # blur keeps a flat image
    from distillnerf_train.data import DataConfig

    with pytest.raises(ValueError, match="photometric_augment"):
        DataConfig.from_dict({"photometric_augment": 2.0})
