"""A user's bag is scored against its own LiDAR: the bag look-up equals the dataroot's, image for image.

Exactly equal, not merely close: the bag's TF carries the nuScenes poses as float64 (the tables' values), its
PointCloud2 carries the ``.pcd.bin`` float32 bytes unchanged, and both look-ups project with the same function
(``lidar_truth.lidar_depth_image``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="rosbags is not installed")

from distillnerf_ros.demo.bag_lidar_truth import LIDAR_MAX_OFFSET_NS, BagLidarTruth  # noqa: E402
from distillnerf_ros.demo.lidar_truth import LidarTruth  # noqa: E402

SHAPE = (64, 114)  # a prediction's size (the tiny model's depth at 228x128 input)


@pytest.fixture(scope="module")
def tiny_bag(nuscenes_tiny, tmp_path_factory) -> Path:
    from distillnerf_ros.bag.writer import write_nuscenes_bag

    out = tmp_path_factory.mktemp("bag_lidar") / "bag"
    write_nuscenes_bag(nuscenes_tiny, "v1.0-tiny", out, sweeps=False, overwrite=True, progress=False)
    return out


@pytest.fixture(scope="module")
def dataroot_truth(nuscenes_tiny) -> LidarTruth:
    truth = LidarTruth.open(nuscenes_tiny, "v1.0-tiny")
    assert truth is not None
    return truth


def keyframe_images(truth: LidarTruth) -> list[tuple[str, int]]:
    """(channel, stamp_us) of every keyframe camera image of the dataroot."""
    return sorted((sd["channel"], int(sd["timestamp"])) for sd in truth.nusc.sample_data
                  if sd["is_key_frame"] and sd["channel"].startswith("CAM"))


def copy_bag(source: Path, target: Path, keep) -> Path:
    """``source`` rewritten into ``target`` with only the messages ``keep(topic, header stamp ns)`` accepts."""
    from rosbags.rosbag2 import Reader, Writer

    from distillnerf_ros.bag.messages import typestore

    with Reader(source) as reader, Writer(target, version=9) as writer:
        out = {}
        for connection, log_ns, raw in reader.messages():
            message = typestore().deserialize_cdr(raw, connection.msgtype)
            header = getattr(message, "header", None)
            stamp = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec if header is not None else log_ns
            if not keep(connection.topic, stamp):
                continue
            if connection.topic not in out:
                out[connection.topic] = writer.add_connection(connection.topic, connection.msgtype,
                                                              typestore=typestore())
            writer.write(out[connection.topic], log_ns, raw)
    return target


def test_bag_lidar_depth_equals_the_dataroot_lidar_depth_for_every_keyframe_image(tiny_bag, dataroot_truth):
    truth = BagLidarTruth.open(tiny_bag)
    assert truth is not None and truth.lidar_topic == "/LIDAR_TOP/points" and len(truth.sweeps) == 2
    images = keyframe_images(dataroot_truth)
    assert len(images) == 12 and set(truth.images) == set(images)
    for channel, stamp_us in images:
        for shape in (SHAPE, (900, 1600)):  # the prediction's size and the camera's own
            expected = dataroot_truth.depth(channel, stamp_us, shape)
            depth = truth.depth(channel, stamp_us, shape)
            assert depth.shape == shape and depth.dtype == np.float32
            hits = depth > 0
            assert hits.sum() > 1000 and depth[hits].min() >= 1.0 and depth[hits].max() <= 80.0
            np.testing.assert_array_equal(depth, expected, err_msg=f"{channel} {stamp_us} {shape}")


def test_an_image_the_bag_does_not_hold_has_no_depth(tiny_bag, dataroot_truth):
    truth = BagLidarTruth.open(tiny_bag)
    channel, stamp_us = keyframe_images(dataroot_truth)[0]
    assert truth.depth(channel, 123, SHAPE) is None
    assert truth.depth(channel, stamp_us + 1, SHAPE) is None  # a microsecond off is another image
    assert truth.depth("CAM_NONE", stamp_us, SHAPE) is None


def test_a_bag_without_lidar_or_without_tf_gives_no_truth(tiny_bag, tmp_path):
    no_lidar = copy_bag(tiny_bag, tmp_path / "no_lidar", lambda topic, _: topic != "/LIDAR_TOP/points")
    assert BagLidarTruth.open(no_lidar) is None
    no_tf = copy_bag(tiny_bag, tmp_path / "no_tf", lambda topic, _: topic not in ("/tf", "/tf_static"))
    assert BagLidarTruth.open(no_tf) is None
    no_info = copy_bag(tiny_bag, tmp_path / "no_info", lambda topic, _: not topic.endswith("/camera_info"))
    assert BagLidarTruth.open(no_info) is None
    assert BagLidarTruth.open(tmp_path / "not_a_bag") is None


def test_missing_ego_poses_or_a_distant_sweep_give_none_for_that_image_only(tiny_bag, dataroot_truth, tmp_path):
    images = keyframe_images(dataroot_truth)
    middle = (min(s for _, s in images) + max(s for _, s in images)) * 1000 // 2  # the keyframes are 9 days apart
    first = [(c, s) for c, s in images if s * 1000 < middle]
    second = [(c, s) for c, s in images if s * 1000 > middle]
    assert len(first) == len(second) == 6
    # the second keyframe loses its sweep: its nearest one is the first keyframe's, far outside the window
    without_sweep = copy_bag(tiny_bag, tmp_path / "one_sweep", lambda topic, stamp: not (
        topic == "/LIDAR_TOP/points" and stamp > middle))
    truth = BagLidarTruth.open(without_sweep)
    assert len(truth.sweeps) == 1 and abs(truth.sweeps[0].stamp_ns - second[0][1] * 1000) > LIDAR_MAX_OFFSET_NS
    assert all(truth.depth(c, s, SHAPE) is None for c, s in second)
    for channel, stamp_us in first:
        np.testing.assert_array_equal(truth.depth(channel, stamp_us, SHAPE),
                                      dataroot_truth.depth(channel, stamp_us, SHAPE))
    # no map -> base_link at all (only /tf_static left): every image is None, and nothing raises
    static_only = BagLidarTruth.open(copy_bag(tiny_bag, tmp_path / "static_only", lambda topic, _: topic != "/tf"))
    assert static_only is not None and all(static_only.depth(c, s, SHAPE) is None for c, s in images)


def test_an_ego_pose_between_two_tf_samples_is_interpolated(tiny_bag, dataroot_truth, tmp_path):
    """Without /tf at CAM_FRONT's stamps, its ego pose comes from the samples ~8 ms either side: nearly the
    recorded one (the car moves a few cm in between), so the depth is nearly the dataroot's."""
    front = {s * 1000 for c, s in keyframe_images(dataroot_truth) if c == "CAM_FRONT"}
    thinned = copy_bag(tiny_bag, tmp_path / "thinned", lambda topic, stamp: not (topic == "/tf" and stamp in front))
    truth = BagLidarTruth.open(thinned)
    for stamp_ns in front:
        assert stamp_ns not in truth.tf.moving["base_link"].stamps  # interpolated, not looked up
        stamp_us = stamp_ns // 1000
        depth, expected = truth.depth("CAM_FRONT", stamp_us, SHAPE), dataroot_truth.depth("CAM_FRONT", stamp_us, SHAPE)
        assert depth is not None
        hits = (depth > 0) | (expected > 0)
        close = np.abs(depth - expected)[hits] <= 1e-2
        assert hits.sum() > 1000 and close.mean() >= 0.99, close.mean()


@pytest.mark.slow
def test_demo_on_a_bag_reports_depth_against_its_lidar(tiny_bag, tmp_path, ros_domain_id):
    """``distillnerf demo --bag`` end to end (node process, DDS, lock-step replay): the report scores every image
    against the bag's LiDAR (about 30 s: node start-up and two keyframes of the random tiny model)."""
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "distillnerf.cli", "demo", "--bag", str(tiny_bag), "--random-weights", "--frames", "2",
         "--out", str(out)], capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    document = json.loads((out / "metrics.json").read_text())
    assert document["info"]["ground truth"] == "LiDAR in the bag (depth only)"
    metrics = document["metrics"]
    assert metrics["depth"] is None and metrics["depth_lidar"]["images"] == 12 and metrics["depth_lidar"]["abs_rel"] > 0
    assert "vs LiDAR" in document["headline"] and document["headline"] in result.stdout
    assert "depth vs LiDAR" in (out / "index.html").read_text()
