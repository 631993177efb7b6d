"""nuScenes -> ROS 2 bag: what the bag holds must be exactly what the devkit says, readable by three readers."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="rosbags is not installed")

from distillnerf.cli import main  # noqa: E402
from distillnerf.rig import load_rig  # noqa: E402
from distillnerf_ros.bag.nuscenes_source import DatasetError  # noqa: E402
from distillnerf_ros.bag.writer import calibration_path, write_nuscenes_bag  # noqa: E402

CAMERAS = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT")


def read_bag(path: Path) -> list[tuple[str, int, object, bytes]]:
    """(topic, log time ns, rosbags message, raw CDR) of every message, with the rosbags reader."""
    from rosbags.rosbag2 import Reader

    from distillnerf_ros.bag.messages import typestore

    out = []
    with Reader(path) as reader:
        for connection, stamp, raw in reader.messages():
            out.append((connection.topic, stamp, typestore().deserialize_cdr(raw, connection.msgtype), bytes(raw)))
    return out


@pytest.fixture(scope="module")
def devkit(nuscenes_tiny):
    from nuscenes.nuscenes import NuScenes

    return NuScenes(version="v1.0-tiny", dataroot=str(nuscenes_tiny), verbose=False)


@pytest.fixture(scope="module")
def tiny_bag(nuscenes_tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bags") / "tiny"
    summary = write_nuscenes_bag(nuscenes_tiny, "v1.0-tiny", out, progress=False)
    assert summary.samples == 2 and summary.scenes == ["scene-0061", "scene-onesample"]
    return out


def stamp_us(header) -> int:
    return header.stamp.sec * 1_000_000 + header.stamp.nanosec // 1000


def test_topics_counts_and_no_partial_left(tiny_bag, devkit):
    messages = read_bag(tiny_bag)
    counts = Counter(topic for topic, *_ in messages)
    expected = {"/tf_static": 2, "/tf": len(devkit.sample_data), "/LIDAR_TOP/points": 2}
    for cam in CAMERAS:
        expected[f"/{cam}/image/compressed"] = 2
        expected[f"/{cam}/camera_info"] = 2
    assert counts == expected
    assert not tiny_bag.with_name("tiny.partial").exists()
    assert sorted(p.name for p in tiny_bag.iterdir()) == ["calibration.yaml", "metadata.yaml", "tiny.mcap"]
    stamps = [stamp for _, stamp, *_ in messages]
    assert stamps == sorted(stamps)


def test_images_and_camera_info_match_the_devkit_exactly(tiny_bag, devkit):
    messages = read_bag(tiny_bag)
    images = {(t, stamp_us(m.header)): (log, m) for t, log, m, _ in messages if t.endswith("/image/compressed")}
    infos = {(t, stamp_us(m.header)): (log, m) for t, log, m, _ in messages if t.endswith("/camera_info")}
    checked = 0
    for sd in devkit.sample_data:
        if sd["sensor_modality"] != "camera":
            continue
        cam = sd["channel"]
        log_time, image = images[(f"/{cam}/image/compressed", sd["timestamp"])]
        assert log_time == sd["timestamp"] * 1000
        assert image.header.frame_id == cam and image.format == "jpeg"
        assert image.header.stamp.sec == sd["timestamp"] // 1_000_000
        assert image.header.stamp.nanosec == (sd["timestamp"] % 1_000_000) * 1000
        assert bytes(image.data) == (Path(devkit.dataroot) / sd["filename"]).read_bytes()
        info_log, info = infos[(f"/{cam}/camera_info", sd["timestamp"])]
        assert info_log == log_time and info.header == image.header
        k = np.asarray(devkit.get("calibrated_sensor", sd["calibrated_sensor_token"])["camera_intrinsic"])
        np.testing.assert_array_equal(info.k.reshape(3, 3), k)
        np.testing.assert_array_equal(info.p.reshape(3, 4)[:, :3], k)
        np.testing.assert_array_equal(info.p.reshape(3, 4)[:, 3], 0)
        np.testing.assert_array_equal(info.r.reshape(3, 3), np.eye(3))
        assert info.distortion_model == "plumb_bob" and not np.any(info.d)
        assert (info.width, info.height) == (sd["width"], sd["height"]) == (1600, 900)
        checked += 1
    assert checked == 12


def test_lidar_and_tf_match_the_devkit(tiny_bag, devkit):
    messages = read_bag(tiny_bag)
    by_stamp = {}
    for topic, log_time, msg, _ in messages:
        if topic == "/tf":
            assert len(msg.transforms) == 2
            by_stamp.setdefault(log_time, []).append(msg)
    lidar = [(log, m) for t, log, m, _ in messages if t == "/LIDAR_TOP/points"]
    for sd in devkit.sample_data:
        channel = sd["channel"]
        ego = devkit.get("ego_pose", sd["ego_pose_token"])
        calib = devkit.get("calibrated_sensor", sd["calibrated_sensor_token"])
        tfs = [m for m in by_stamp[sd["timestamp"] * 1000] if m.transforms[1].child_frame_id == channel]
        assert len(tfs) == 1
        to_base, to_sensor = tfs[0].transforms
        assert (to_base.header.frame_id, to_base.child_frame_id) == ("map", "base_link")
        assert (to_sensor.header.frame_id, to_sensor.child_frame_id) == ("base_link", channel)
        for transform, record in ((to_base, ego), (to_sensor, calib)):
            assert stamp_us(transform.header) == sd["timestamp"]
            t, q = transform.transform.translation, transform.transform.rotation
            np.testing.assert_array_equal([t.x, t.y, t.z], record["translation"])
            np.testing.assert_array_equal([q.w, q.x, q.y, q.z], record["rotation"])
        if channel == "LIDAR_TOP":
            (log_time, cloud), = [(log, m) for log, m in lidar if stamp_us(m.header) == sd["timestamp"]]
            raw = (Path(devkit.dataroot) / sd["filename"]).read_bytes()
            assert log_time == sd["timestamp"] * 1000 and cloud.header.frame_id == "LIDAR_TOP"
            assert [f.name for f in cloud.fields] == ["x", "y", "z", "intensity", "ring"]
            assert cloud.point_step == 20 and cloud.width * 20 == len(raw) and cloud.height == 1
            assert bytes(cloud.data) == raw
            points = np.frombuffer(bytes(cloud.data), dtype="<f4").reshape(-1, 5)
            np.testing.assert_array_equal(points, np.fromfile(Path(devkit.dataroot) / sd["filename"],
                                                              dtype=np.float32).reshape(-1, 5))


def test_tf_static_is_offered_transient_local_and_holds_every_sensor(tiny_bag, devkit):
    from rosbags.interfaces import QosDurability, QosReliability
    from rosbags.rosbag2 import Reader

    with Reader(tiny_bag) as reader:
        qos = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
    assert qos["/tf_static"][0].durability == QosDurability.TRANSIENT_LOCAL
    assert all(q[0].reliability == QosReliability.RELIABLE for q in qos.values())
    assert qos["/CAM_FRONT/image/compressed"][0].durability == QosDurability.VOLATILE
    statics = [m for t, _, m, _ in read_bag(tiny_bag) if t == "/tf_static"]
    assert sorted(tf.child_frame_id for tf in statics[0].transforms) == sorted(CAMERAS + ("LIDAR_TOP",))
    assert all(tf.header.frame_id == "base_link" for tf in statics[0].transforms)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # mcap_ros2.reader warns about its own module
def test_mcap_ros2_reader_agrees(tiny_bag, devkit):
    from mcap_ros2.reader import read_ros2_messages

    seen = Counter()
    for message in read_ros2_messages(str(tiny_bag / "tiny.mcap")):
        seen[message.channel.topic] += 1
        msg = message.ros_msg
        if message.channel.topic == "/CAM_BACK/image/compressed":
            assert message.log_time_ns == (msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
            sd = [s for s in devkit.sample_data if s["timestamp"] * 1000 == message.log_time_ns][0]
            assert bytes(msg.data) == (Path(devkit.dataroot) / sd["filename"]).read_bytes()
            assert msg.header.frame_id == "CAM_BACK"
        if message.channel.topic == "/CAM_BACK/camera_info":
            assert list(msg.d) == [0.0] * 5 and msg.k[8] == 1.0
    assert seen["/CAM_BACK/image/compressed"] == 2 and seen["/tf"] == 14 and seen["/tf_static"] == 2


def test_rclpy_deserializes_the_recorded_bytes(tiny_bag):
    pytest.importorskip("rclpy", reason="rclpy is not installed")
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CameraInfo, CompressedImage, PointCloud2

    classes = {"/CAM_FRONT/image/compressed": CompressedImage, "/CAM_FRONT/camera_info": CameraInfo,
               "/LIDAR_TOP/points": PointCloud2}
    done = set()
    for topic, _, msg, raw in read_bag(tiny_bag):
        if topic in classes:
            ros = deserialize_message(raw, classes[topic])
            assert ros.header.frame_id == msg.header.frame_id
            assert (ros.header.stamp.sec, ros.header.stamp.nanosec) == (msg.header.stamp.sec, msg.header.stamp.nanosec)
            if topic == "/CAM_FRONT/camera_info":
                np.testing.assert_array_equal(np.asarray(ros.k), msg.k)
                assert (ros.width, ros.height) == (1600, 900)
            else:
                assert bytes(ros.data) == bytes(msg.data)
            done.add(topic)
    assert done == set(classes)


def test_calibration_file_is_the_devkit_rig(tiny_bag, devkit):
    rig = load_rig(calibration_path(tiny_bag))
    assert rig.camera_names == CAMERAS and rig.lidar.name == "LIDAR_TOP" and rig.frame_id == "base_link"
    sample = devkit.get("sample", devkit.get("scene", devkit.scene[0]["token"])["first_sample_token"])
    for cam in rig.cameras:
        sd = devkit.get("sample_data", sample["data"][cam.name])
        calib = devkit.get("calibrated_sensor", sd["calibrated_sensor_token"])
        np.testing.assert_allclose(cam.intrinsics, calib["camera_intrinsic"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(cam.translation, calib["translation"], rtol=0, atol=1e-12)
        assert (cam.width, cam.height) == (1600, 900)


def test_sqlite3_single_scene_keyframes_only(nuscenes_tiny, tmp_path):
    out = tmp_path / "one"
    summary = write_nuscenes_bag(nuscenes_tiny, "v1.0-tiny", out, scenes=["scene-onesample"], storage="sqlite3",
                                 sweeps=False, progress=False)
    assert summary.scenes == ["scene-onesample"] and summary.samples == 1
    assert any(p.suffix == ".db3" for p in out.iterdir())
    messages = read_bag(out)
    assert len(messages) == 1 + 7 + 7 + 6  # tf_static, tf per sample_data, images, camera infos + 1 cloud
    assert Counter(t for t, *_ in messages)["/LIDAR_TOP/points"] == 1


def make_dataroot_with_sweeps(source: Path, target: Path) -> Path:
    """A copy of the tiny tables (files linked) where CAM_FRONT of scene-0061 gets one sweep 50 ms later."""
    (target / "v1.0-tiny").mkdir(parents=True)
    os.symlink(source / "samples", target / "samples")
    for table in (source / "v1.0-tiny").glob("*.json"):
        shutil.copy(table, target / "v1.0-tiny" / table.name)
    path = target / "v1.0-tiny" / "sample_data.json"
    records = json.loads(path.read_text())
    sample = json.loads((target / "v1.0-tiny" / "sample.json").read_text())[0]
    key = next(r for r in records if r["sample_token"] == sample["token"] and "CAM_FRONT__" in r["filename"])
    sweep = dict(key, token="f" * 32, timestamp=key["timestamp"] + 50_000, is_key_frame=False, prev=key["token"],
                 next="")
    key["next"] = sweep["token"]
    records.append(sweep)
    path.write_text(json.dumps(records))
    return target


def test_sweeps_are_written_unless_no_sweeps(nuscenes_tiny, tmp_path):
    root = make_dataroot_with_sweeps(nuscenes_tiny, tmp_path / "root")
    with_sweeps = write_nuscenes_bag(root, "v1.0-tiny", tmp_path / "a", scenes=["scene-0061"], progress=False)
    without = write_nuscenes_bag(root, "v1.0-tiny", tmp_path / "b", scenes=["scene-0061"], sweeps=False,
                                 progress=False)
    assert with_sweeps.messages["/CAM_FRONT/image/compressed"] == 2
    assert without.messages["/CAM_FRONT/image/compressed"] == 1
    assert with_sweeps.samples == without.samples == 1
    stamps = [stamp_us(m.header) for t, _, m, _ in read_bag(tmp_path / "a") if t == "/CAM_FRONT/camera_info"]
    assert stamps[1] - stamps[0] == 50_000


def assert_no_bag(out: Path) -> None:
    assert not out.exists()
    assert not out.with_name(out.name + ".partial").exists()


@pytest.mark.parametrize("case", ["no_dataroot", "no_version", "unknown_scene", "corrupt_table", "missing_file"])
def test_errors_are_clear_and_leave_no_bag(case, nuscenes_tiny, tmp_path):
    root, version, scenes = nuscenes_tiny, "v1.0-tiny", None
    if case == "no_dataroot":
        root, expected = tmp_path / "nowhere", "does not exist"
    elif case == "no_version":
        version, expected = "v1.0-trainval", "no table folder"
    elif case == "unknown_scene":
        scenes, expected = ["scene-9999"], "unknown scene(s) scene-9999; available: scene-0061, scene-onesample"
    else:
        root = make_dataroot_with_sweeps(nuscenes_tiny, tmp_path / "root")
        if case == "corrupt_table":
            (root / "v1.0-tiny" / "ego_pose.json").write_text('[{"token": ')
            expected = "corrupt nuScenes table"
        else:  # the sweep points at a file that is not there
            path = root / "v1.0-tiny" / "sample_data.json"
            records = json.loads(path.read_text())
            records[-1]["filename"] = "sweeps/CAM_FRONT/missing.jpg"
            path.write_text(json.dumps(records))
            expected = "missing.jpg is missing"
    out = tmp_path / "bag"
    with pytest.raises(DatasetError) as error:
        write_nuscenes_bag(root, version, out, scenes=scenes, progress=False)
    assert expected in str(error.value)
    assert_no_bag(out)


def test_a_failure_while_writing_removes_the_partial_bag(nuscenes_tiny, tmp_path, monkeypatch):
    from distillnerf_ros.bag import messages

    calls = {"n": 0}
    real = messages.lidar_points

    def failing(*args):
        calls["n"] += 1
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(messages, "lidar_points", failing)
    out = tmp_path / "bag"
    with pytest.raises(OSError, match="disk full"):
        write_nuscenes_bag(nuscenes_tiny, "v1.0-tiny", out, progress=False)
    assert calls["n"] == 1 and real is not failing
    assert_no_bag(out)


def test_cli_writes_and_refuses_to_overwrite(nuscenes_tiny, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["nuscenes2bag", "--dataroot", str(nuscenes_tiny), "--version", "v1.0-tiny", "--scene", "scene-0061",
            "--out", str(out), "--quiet", "--no-sweeps"]
    assert main(argv) == 0
    assert "1 samples" in capsys.readouterr().out and (out / "metadata.yaml").is_file()
    assert main(argv) == 1
    assert "exists already" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
    assert main(["nuscenes2bag", "--dataroot", str(tmp_path / "none"), "--version", "v1.0-tiny", "--out",
                 str(tmp_path / "x"), "--quiet"]) == 1
    assert "does not exist" in capsys.readouterr().err
