"""Geometric augmentation: a zoom-in crop with the intrinsics kept right, and every target cropped with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distillnerf_train.data import DataConfig, NuScenesKeyframes
from distillnerf_train.data.augment import CropBox, GeometricAugment

SIZE, RENDER = (96, 54), (48, 27)


def test_cropped_intrinsics_move_points_with_the_crop():
    k = np.array([[80.0, 0.0, 47.0], [0.0, 81.0, 28.0], [0.0, 0.0, 1.0]])
    box = CropBox(left=0.1, top=0.05, scale=0.8)
    points = np.random.default_rng(0).uniform([-5, -3, 2], [5, 3, 30], size=(50, 3))
    uv = (points @ k.T)[:, :2] / points[:, 2:]
    uv_crop = (points @ box.intrinsics(k, SIZE).T)[:, :2] / points[:, 2:]
    x0, y0, _, _ = box.pixels(*SIZE)
    np.testing.assert_allclose(uv_crop, (uv - [x0, y0]) / 0.8, rtol=1e-9)
    np.testing.assert_allclose(CropBox(0.0, 0.0, 1.0).intrinsics(k, SIZE), k)


def test_resample_takes_the_box_at_any_resolution():
    box = CropBox(left=0.25, top=0.1, scale=0.5)
    for width in (40, 80):  # the same fractions whatever the map's own resolution
        ramp = np.tile((np.arange(width) + 0.5) / width, (20, 1))  # each pixel holds its centre's x fraction
        out = box.resample(ramp, (10, 5))
        expected = 0.25 + 0.5 * (np.arange(10) + 0.5) / 10
        np.testing.assert_allclose(out[2].numpy(), expected, atol=1e-6)
    depth = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    assert set(np.unique(box.resample(depth, (6, 6), "nearest").numpy())) <= {1.0, 2.0, 3.0, 4.0}  # no blends


def test_draws_follow_the_rng_and_stay_inside_the_image():
    augment = GeometricAugment(probability=1.0, min_scale=0.8)
    torch.manual_seed(3)
    first = [augment.draw() for _ in range(20)]
    torch.manual_seed(3)
    assert [augment.draw() for _ in range(20)] == first  # the trainer's saved RNG reproduces them on resume
    for box in first:
        assert 0.8 <= box.scale <= 1.0 and box.left >= 0 and box.top >= 0
        assert box.left + box.scale <= 1.0 + 1e-9 and box.top + box.scale <= 1.0 + 1e-9
    assert GeometricAugment(probability=0.0).draw() is None
    with pytest.raises(ValueError, match="geometric_augment"):
        DataConfig.from_dict({"geometric_augment": 1.5})


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from distillnerf_train import synth

    root = tmp_path_factory.mktemp("synth")
    synth.generate_dataset(root, scenes=1, frames=1, seed=3, size=SIZE)
    return root


def _item(root, augment: float):
    config = DataConfig(dataroot=str(root), version="v1.0-synth", input_size=SIZE, render_size=RENDER,
                        dense_depth="gt", geometric_augment=augment, crop_min_scale=0.7)
    torch.manual_seed(0)
    return NuScenesKeyframes(config)[0]


def test_loader_crops_image_and_targets_consistently(synth_root):
    plain, cropped = _item(synth_root, 0.0), _item(synth_root, 1.0)
    assert not torch.allclose(plain["intrinsics"], cropped["intrinsics"])
    right, wrong = [], []  # LiDAR through the cropped / the uncropped intrinsics vs the cropped exact depth
    torch.manual_seed(0)
    boxes = [GeometricAugment(1.0, 0.7).draw() for _ in range(6)]  # the loader's draws, in its order
    for cam, box in enumerate(boxes):
        # intrinsics: the plain camera's, through the box; render intrinsics at render size from them
        expected = box.intrinsics(plain["intrinsics"][cam].double().numpy(), SIZE)
        np.testing.assert_allclose(cropped["intrinsics"][cam].numpy(), expected, rtol=1e-5)
        # the image is the crop of the full image (PIL's box resize vs the box resample of the plain image)
        error = (cropped["images"][cam] - box.resample(plain["images"][cam], SIZE)).abs()
        assert float(error.mean()) < 0.03, f"camera {cam}: cropped image differs from the crop ({error.mean():.3f})"
        # LiDAR, projected through the new intrinsics, agrees with the exact depth cropped with the same box:
        # geometry and targets moved together
        lidar, dense = cropped["lidar_depth"][cam], cropped["dense_depth"][cam]
        both = (lidar > 0) & (dense > 0) & ~cropped["sky"][cam]
        assert int(both.sum()) > 30
        relative = ((lidar[both] - dense[both]).abs() / dense[both]).median()
        assert float(relative) < 0.05, f"camera {cam}: LiDAR and cropped depth disagree by {relative:.3f}"
        stale = plain["lidar_depth"][cam]
        stale_both = (stale > 0) & (dense > 0) & ~cropped["sky"][cam]
        right.append(float(relative))
        wrong.append(float(((stale[stale_both] - dense[stale_both]).abs() / dense[stale_both]).median()))
    assert np.mean(wrong) > 3 * np.mean(right)  # the check sees a crop whose intrinsics were not kept right
    torch.manual_seed(0)
    again = NuScenesKeyframes(DataConfig(dataroot=str(synth_root), version="v1.0-synth", input_size=SIZE,
                                         render_size=RENDER, dense_depth="gt", geometric_augment=1.0,
                                         crop_min_scale=0.7))[0]
    assert torch.equal(again["images"], cropped["images"]) and torch.equal(again["lidar_depth"], cropped["lidar_depth"])
