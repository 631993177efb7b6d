"""A second real rig: DDAD's DGP layout read for scoring depth against its LiDAR."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distillnerf.checkpoint import save_checkpoint
from distillnerf.config import load_model_config
from distillnerf.model import DistillNeRF
from distillnerf.rig import load_rig
from distillnerf_train.data.dgp import DGPKeyframes, is_dgp_dataset


def test_dgp_keyframes_fill_the_rig_slots_with_lidar_depth(ddad_mini, tmp_path):
    assert is_dgp_dataset(ddad_mini) and not is_dgp_dataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="DGP"):
        DGPKeyframes(tmp_path, (228, 128), (114, 64))
    data = DGPKeyframes(ddad_mini, (228, 128), (114, 64))
    assert len(data) == 6
    item = data[0]
    valid = item["camera_valid"]
    assert int(valid.sum()) == 3 and item["images"].shape == (6, 3, 128, 228)
    rig = {c.name: c for c in load_rig("ddad").cameras}
    # slots in the nuScenes order by viewing direction: front-left, front, front-right
    for slot, name in enumerate(("CAMERA_05", "CAMERA_01", "CAMERA_06")):
        pose = item["cam_to_ego"][slot].double().numpy()
        assert np.linalg.norm(pose[:3, 3] - rig[name].translation) < 0.5  # ego motion between the stamps only
        assert np.dot(pose[:3, 2], rig[name].cam_to_ego[:3, 2]) > 0.99
        depth = item["lidar_depth"][slot]
        hits = depth > 0
        assert hits.sum() > 500 and float(depth[hits].min()) >= 1.0 and float(depth[hits].max()) <= 80.0
    assert float(item["lidar_depth"][~valid].abs().sum()) == 0.0


def test_eval_scores_a_dgp_dataset(ddad_mini, tmp_path):
    from distillnerf_train.evaluation import evaluate

    torch.manual_seed(0)
    config = load_model_config("tiny")
    path = save_checkpoint(tmp_path / "tiny.pt", DistillNeRF(config), config)
    report = evaluate(path, ddad_mini, "ignored", device="cpu", max_samples=2)
    assert report["version"] == "dgp" and report["samples"] == 2
    assert report["depth_lidar"]["samples"] == 2 and 0 < report["depth_lidar"]["abs_rel"] < 10
    assert report["occupancy"] is None and report["depth_dense"]["samples"] == 0
