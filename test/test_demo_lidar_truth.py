"""Real frames are scored against their LiDAR: the demo's projection equals the training loader's targets."""

from __future__ import annotations

import numpy as np
import pytest

from distillnerf_ros.demo.lidar_truth import LidarTruth
from distillnerf_ros.demo.results import FrameResult, compute_metrics, headline


def test_lidar_depth_of_a_real_frame_matches_the_training_targets(nuscenes_tiny):
    from distillnerf_train.data import DataConfig, NuScenesKeyframes

    truth = LidarTruth.open(nuscenes_tiny, "v1.0-tiny")
    assert truth is not None
    data = NuScenesKeyframes(DataConfig(dataroot=str(nuscenes_tiny), version="v1.0-tiny", input_size=(228, 128),
                                        render_size=(114, 64), features=False, occupancy=False, teacher=False))
    item = data[0]
    sample = truth.nusc.get("sample", item["sample_token"])
    for index, channel in enumerate(data.config.cameras):
        camera = truth.nusc.get("sample_data", sample["data"][channel])
        depth = truth.depth(channel, int(camera["timestamp"]), (64, 114))
        assert depth.shape == (64, 114)
        hits = depth > 0
        assert hits.sum() > 100 and depth[hits].min() >= 1.0 and depth[hits].max() <= 80.0
        np.testing.assert_allclose(depth, item["lidar_depth"][index].numpy(), atol=1e-3)
    assert truth.depth("CAM_FRONT", 123, (64, 114)) is None  # an image the dataroot does not know


def test_report_scores_depth_against_lidar():
    gt = np.zeros((4, 6), np.float32)
    gt[1, 2], gt[2, 3] = 10.0, 20.0
    frame = FrameResult(stamp_ns=0, inputs={}, depth={"CAM_FRONT": np.full((4, 6), 11.0, np.float32)},
                        depth_lidar={"CAM_FRONT": gt})
    metrics = compute_metrics([frame])
    assert metrics["depth"] is None and metrics["depth_lidar"]["images"] == 1
    assert metrics["depth_lidar"]["abs_rel"] == pytest.approx((0.1 + 9.0 / 20.0) / 2)
    assert "vs LiDAR" in headline(metrics)
