"""nuscenes2bag on the synthetic world (version v1.0-synth) with camera sweeps: every sample_data, exactly."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="rosbags is not installed")

from distillnerf.rig import load_rig  # noqa: E402
from distillnerf_ros.bag.writer import calibration_path, write_nuscenes_bag  # noqa: E402


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    from distillnerf.cli import build_parser

    if "synth" in build_parser()[1]:
        pytest.skip("the `distillnerf synth` command is not installed")
    out = tmp_path_factory.mktemp("synth") / "world"
    result = subprocess.run([sys.executable, "-m", "distillnerf.cli", "synth", "--out", str(out), "--scenes", "1",
                             "--frames", "2", "--seed", "0", "--size", "96x54", "--sweeps"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def read(path: Path):
    from rosbags.rosbag2 import Reader

    from distillnerf_ros.bag.messages import typestore

    with Reader(path) as reader:
        return [(c.topic, t, typestore().deserialize_cdr(raw, c.msgtype)) for c, t, raw in reader.messages()]


def test_synthetic_world_with_sweeps_converts_exactly(synth_root, tmp_path):
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes(version="v1.0-synth", dataroot=str(synth_root), verbose=False)
    cameras = [sd for sd in nusc.sample_data if sd["sensor_modality"] == "camera"]
    assert any(not sd["is_key_frame"] for sd in cameras), "the world was asked for sweeps"
    full = write_nuscenes_bag(synth_root, "v1.0-synth", tmp_path / "full", progress=False)
    keyframes = write_nuscenes_bag(synth_root, "v1.0-synth", tmp_path / "keys", sweeps=False, progress=False)
    assert full.samples == keyframes.samples == len(nusc.sample) == 2

    messages = read(tmp_path / "full")
    images = {(m.header.frame_id, m.header.stamp.sec * 10**6 + m.header.stamp.nanosec // 1000): (log, m)
              for topic, log, m in messages if topic.endswith("/image/compressed")}
    assert len(images) == len(cameras)
    for sd in cameras:
        log_time, image = images[(sd["channel"], sd["timestamp"])]
        assert log_time == sd["timestamp"] * 1000
        assert bytes(image.data) == (synth_root / sd["filename"]).read_bytes()
    counts = Counter(topic for topic, _, _ in messages)
    assert counts["/tf"] == len(cameras) + sum(sd["sensor_modality"] == "lidar" for sd in nusc.sample_data)
    keyframe_images = Counter(t for t, _, _ in read(tmp_path / "keys") if t.endswith("/image/compressed"))
    assert set(keyframe_images.values()) == {2} and len(keyframe_images) == 6

    rig = load_rig(calibration_path(tmp_path / "full"))
    for cam in rig.cameras:
        assert (cam.width, cam.height) == (96, 54)
        sd = nusc.get("sample_data", nusc.sample[0]["data"][cam.name])
        calib = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        np.testing.assert_allclose(cam.intrinsics, calib["camera_intrinsic"], rtol=0, atol=1e-12)
