"""The offline per-scene teacher: losses, poses, sharding, learning a hand-made scene, and the cache files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from distillnerf.metrics import depth_metrics, psnr
from distillnerf_train.teacher import (FieldConfig, OptimConfig, RenderConfig, TeacherOptimiser, line_of_sight_loss,
                                       render_image, shard, virtual_cam_to_ego)

sys.path.insert(0, str(Path(__file__).parent))
from teacher_toy_scene import camera_to_ego, toy_scene  # noqa: E402

TINY = {"size": [38, 22], "field": {"levels": [[8, 8, 4], [16, 16, 8]], "hidden": 16},
        "render": {"samples": 16, "chunk": 4096},
        "optim": {"steps": 2, "rays_per_step": 256, "lidar_rays_per_step": 64}}


def test_line_of_sight_loss_rewards_weight_at_the_return_only():
    t = torch.arange(1.0, 21.0).expand(2, -1)  # samples at 1..20 m
    target, eps = torch.tensor([10.0, 10.0]), torch.tensor([0.5, 0.5])
    at_surface = torch.zeros(2, 20)
    at_surface[:, 9] = 1.0  # all weight at 10 m
    empty, surface = line_of_sight_loss(at_surface, t, target, eps)
    assert float(empty) == 0.0 and float(surface) == 0.0
    in_front = torch.zeros(2, 20)
    in_front[:, 4] = 1.0  # a floater at 5 m
    empty, surface = line_of_sight_loss(in_front, t, target, eps)
    assert float(empty) == pytest.approx(1.0) and float(surface) == pytest.approx(1.0)


def test_virtual_views_move_one_metre_in_the_cameras_own_frame():
    front = camera_to_ego(0.0)  # looks along ego +x: camera x (right) is ego -y, camera y (down) is ego -z
    left, right, up = (virtual_cam_to_ego(front, o) for o in ((-1.0, 0, 0), (1.0, 0, 0), (0, -1.0, 0)))
    assert torch.allclose(left[:3, 3] - front[:3, 3], torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
    assert torch.allclose(right[:3, 3] - front[:3, 3], torch.tensor([0.0, -1.0, 0.0]), atol=1e-6)
    assert torch.allclose(up[:3, 3] - front[:3, 3], torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)
    assert torch.equal(left[:3, :3], front[:3, :3])


def test_shards_split_the_scene_list_deterministically():
    names = [f"scene-{i:04d}" for i in range(10)][::-1]
    parts = [shard(names, i, 3) for i in range(3)]
    assert sorted(sum(parts, [])) == sorted(names)
    assert not set(parts[0]) & set(parts[1])
    assert parts == [shard(list(reversed(names)), i, 3) for i in range(3)]
    with pytest.raises(ValueError):
        shard(names, 3, 3)


def _quality(optimiser, scene, exact, render_config):
    width, height = scene.size
    abs_rel, rgb_psnr, sky_accuracy = [], [], []
    for k, keyframe in enumerate(scene.keyframes):
        for cam in range(len(keyframe.camera_tokens)):
            out = render_image(optimiser.field, keyframe.intrinsics[cam], keyframe.cam_to_world(cam), width, height,
                               render_config)
            abs_rel.append(depth_metrics(out["depth"], exact[k][cam])["abs_rel"])
            rgb_psnr.append(psnr(out["rgb"].permute(2, 0, 1), keyframe.images[cam]))
            sky_accuracy.append(float((out["sky"] == (exact[k][cam] == 0)).float().mean()))
    return np.mean(abs_rel), np.mean(rgb_psnr), np.mean(sky_accuracy)


def test_teacher_learns_the_geometry_and_sky_of_a_hand_made_scene():
    torch.manual_seed(0)
    scene, exact = toy_scene()
    field = FieldConfig(levels=[[16, 16, 4], [32, 32, 8], [64, 64, 16]], margin_xy=20.0, radius_z=4.0)
    render = RenderConfig(samples=32, far=100.0, chunk=4096)
    optimiser = TeacherOptimiser(scene, field, render, OptimConfig(steps=120, rays_per_step=512,
                                                                   lidar_rays_per_step=128))
    before = _quality(optimiser, scene, exact, render)
    optimiser.fit()
    abs_rel, rgb_psnr, sky_accuracy = _quality(optimiser, scene, exact, render)
    assert abs_rel < 0.2, (before, abs_rel)  # exact depth, LiDAR only on every 3rd row/column
    assert sky_accuracy > 0.9
    assert rgb_psnr > before[1] + 3.0


def test_teacher_command_caches_targets_the_loader_reads(nuscenes_tiny, tmp_path):
    from distillnerf.cli import main
    from distillnerf_train.data import DataConfig, NuScenesKeyframes

    config = tmp_path / "tiny_teacher.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "teacher"
    code = main(["teacher", "--data", str(nuscenes_tiny), "--version", "v1.0-tiny", "--scene", "scene-0061",
                 "--config", str(config), "--out", str(out)])
    assert code == 0
    report = json.loads((out / "scenes" / "scene-0061.json").read_text())
    assert report["steps"] == 2 and report["keyframes"] >= 1 and np.isfinite(report["psnr"])
    files = sorted(out.glob("*.npz"))
    assert len(files) == 6 * report["keyframes"]
    with np.load(files[0]) as arrays:
        assert arrays["depth"].shape == (22, 38) and arrays["depth"].dtype == np.float32
        assert arrays["sky"].dtype == bool
        for view in ("left", "right", "up"):
            assert arrays[f"virtual_{view}_rgb"].shape == (22, 38, 3)
            assert arrays[f"virtual_{view}_rgb"].dtype == np.uint8
            assert arrays[f"virtual_{view}_depth"].shape == (22, 38)
            assert arrays[f"virtual_{view}_cam_to_ego"].shape == (4, 4)
        shift = np.linalg.inv(arrays["virtual_up_cam_to_ego"]) @ arrays["virtual_left_cam_to_ego"]
        assert np.allclose(shift[:3, 3], [-1.0, 1.0, 0.0], atol=1e-4)  # left minus up, in the camera frame
    dataset = NuScenesKeyframes(DataConfig(dataroot=str(nuscenes_tiny), version="v1.0-tiny", teacher_dir=str(out),
                                           scenes=["scene-0061"], input_size=(38, 22), render_size=(38, 22),
                                           occupancy=False, features=False))
    item = dataset[0]
    assert bool(item["virtual_valid"].all()) and bool(item["dense_depth_valid"].all())
    first_front = dataset.nusc.get("sample", item["sample_token"])["data"]["CAM_FRONT_LEFT"]
    with np.load(out / f"{first_front}.npz") as arrays:
        assert np.allclose(arrays["virtual_right_cam_to_ego"][:3, :3], item["cam_to_ego"][0, :3, :3].numpy(),
                           atol=1e-5)


def test_teacher_command_rejects_unknown_scenes(nuscenes_tiny, tmp_path, capsys):
    from distillnerf.cli import main

    code = main(["teacher", "--data", str(nuscenes_tiny), "--version", "v1.0-tiny", "--scene", "scene-9999",
                 "--out", str(tmp_path)])
    assert code == 2 and "scene-9999" in capsys.readouterr().err
