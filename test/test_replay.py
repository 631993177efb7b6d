"""``distillnerf replay``: a bag played in another process reaches subscribers over real DDS with its stamps,
its timing (scaled by --rate), /clock, --start, --loop and latched topics; long silences are skipped (--max-gap)
and SIGINT/SIGTERM end it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed")
pytest.importorskip("rosbags", reason="rosbags is not installed")

T0_NS = 1_500_000_000 * 10**9 + 123_456_000
PERIOD_NS = 100_000_000
NINE_DAYS_NS = 9 * 86400 * 10**9
CAMERAS = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT")


def make_string_bag(path: Path, count: int = 10) -> Path:
    """/data (std_msgs/String 'i') every 100 ms and one /latched message offered transient local at the start."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
    from rosbags.rosbag2 import StoragePlugin, Writer

    from distillnerf_ros.bag.messages import typestore

    string = typestore().types["std_msgs/msg/String"]
    forever = QosTime(9223372036, 854775807)
    latched = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, forever,
                  forever, QosLiveliness.AUTOMATIC, forever, False)
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        latch = writer.add_connection("/latched", "std_msgs/msg/String", typestore=typestore(),
                                      offered_qos_profiles=[latched])
        data = writer.add_connection("/data", "std_msgs/msg/String", typestore=typestore())
        writer.write(latch, T0_NS, typestore().serialize_cdr(string(data="calibration"), "std_msgs/msg/String"))
        for i in range(count):
            writer.write(data, T0_NS + i * PERIOD_NS,
                         typestore().serialize_cdr(string(data=str(i)), "std_msgs/msg/String"))
    return path


def make_two_scene_bag(path: Path, per_scene: int = 5) -> tuple[Path, list[int]]:
    """/data (std_msgs/Header, stamp = record time, frame_id 'i') in two bursts 100 ms apart inside, nine days
    apart from each other, like two nuScenes scenes recorded on different days; returns the bag and its stamps."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from distillnerf_ros.bag.messages import typestore

    header, stamp_type = typestore().types["std_msgs/msg/Header"], typestore().types["builtin_interfaces/msg/Time"]
    stamps = [T0_NS + scene * NINE_DAYS_NS + i * PERIOD_NS for scene in range(2) for i in range(per_scene)]
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        data = writer.add_connection("/data", "std_msgs/msg/Header", typestore=typestore())
        for i, stamp in enumerate(stamps):
            message = header(stamp=stamp_type(*divmod(stamp, 10**9)), frame_id=str(i))
            writer.write(data, stamp, typestore().serialize_cdr(message, "std_msgs/msg/Header"))
    return path, stamps


class Recorder:
    """Subscribers in this process; each message is kept with its arrival time (monotonic seconds)."""

    def __init__(self, context, topics: dict[str, type], latched: tuple[str, ...] = ()):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock

        self.node = rclpy.create_node("replay_recorder", context=context)
        self.received: dict[str, list] = {topic: [] for topic in topics}
        self.clock: list[int] = []
        for topic, cls in topics.items():
            qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if topic in latched
                             else DurabilityPolicy.VOLATILE)
            self.node.create_subscription(cls, topic, lambda m, t=topic: self.received[t].append(
                (time.monotonic(), m)), qos)
        self.node.create_subscription(Clock, "/clock", lambda m: self.clock.append(
            m.clock.sec * 10**9 + m.clock.nanosec), QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def spin_until(self, done, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def start_replay(bag: Path, *options: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_LOGGING_USE_STDOUT="1")
    return subprocess.Popen([sys.executable, "-m", "distillnerf.cli", "replay", str(bag), *options],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def finish(process: subprocess.Popen, timeout: float = 30) -> str:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"replay did not finish:\n{output}")
    return output


def stamp_ns(header) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec


@pytest.fixture(scope="module")
def scene_bag(nuscenes_tiny, tmp_path_factory) -> Path:
    from distillnerf_ros.bag.writer import write_nuscenes_bag

    out = tmp_path_factory.mktemp("replay") / "scene"
    write_nuscenes_bag(nuscenes_tiny, "v1.0-tiny", out, scenes=["scene-0061"], progress=False)
    return out


def test_nuscenes_bag_reaches_a_subscriber_with_recorded_stamps(scene_bag, nuscenes_tiny, ros_context):
    from nuscenes.nuscenes import NuScenes
    from sensor_msgs.msg import CameraInfo, CompressedImage, PointCloud2

    topics = {f"/{cam}/image/compressed": CompressedImage for cam in CAMERAS}
    topics.update({f"/{cam}/camera_info": CameraInfo for cam in CAMERAS})
    topics["/LIDAR_TOP/points"] = PointCloud2
    recorder = Recorder(ros_context, topics)
    try:
        wait = [arg for topic in topics for arg in ("--wait-for", topic)]
        process = start_replay(scene_bag, *wait)
        recorder.spin_until(lambda: process.poll() is not None and all(recorder.received.values()), 60)
        output = finish(process)
    finally:
        recorder.close()
    assert process.returncode == 0, output
    nusc = NuScenes(version="v1.0-tiny", dataroot=str(nuscenes_tiny), verbose=False)
    sample = nusc.get("sample", nusc.scene[0]["first_sample_token"])
    last_ns = 0
    for cam in CAMERAS + ("LIDAR_TOP",):
        sd = nusc.get("sample_data", sample["data"][cam])
        last_ns = max(last_ns, sd["timestamp"] * 1000)
        main = f"/{cam}/image/compressed" if cam != "LIDAR_TOP" else "/LIDAR_TOP/points"
        (_, message), = recorder.received[main]
        assert stamp_ns(message.header) == sd["timestamp"] * 1000 and message.header.frame_id == cam
        assert bytes(message.data) == (nuscenes_tiny / sd["filename"]).read_bytes()
        if cam != "LIDAR_TOP":
            (_, info), = recorder.received[f"/{cam}/camera_info"]
            assert info.header == message.header
            intrinsics = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])["camera_intrinsic"]
            np.testing.assert_array_equal(np.asarray(info.k).reshape(3, 3), intrinsics)
    assert recorder.clock and recorder.clock[-1] == last_ns
    assert recorder.clock == sorted(recorder.clock)
    assert "replayed" in output
    try:
        import tf2_msgs.msg  # noqa: F401
    except ImportError:
        assert "skipping /tf: tf2_msgs/msg/TFMessage not importable" in output


def test_timing_is_scaled_by_rate_and_clock_follows(tmp_path, ros_context):
    from std_msgs.msg import String

    bag = make_string_bag(tmp_path / "strings")
    recorder = Recorder(ros_context, {"/data": String, "/latched": String}, latched=("/latched",))
    try:
        process = start_replay(bag, "--rate", "2", "--wait-for", "/data", "--wait-for", "/latched")
        recorder.spin_until(lambda: process.poll() is not None and len(recorder.received["/data"]) == 10, 60)
        output = finish(process)
    finally:
        recorder.close()
    assert process.returncode == 0, output
    data = recorder.received["/data"]
    assert [m.data for _, m in data] == [str(i) for i in range(10)]
    assert [m.data for _, m in recorder.received["/latched"]] == ["calibration"]
    span = data[-1][0] - data[0][0]
    assert 0.9 / 2 - 0.1 < span < 0.9 / 2 + 3.0, span  # 900 ms recorded at rate 2; loose top for a busy machine
    assert recorder.clock[0] >= T0_NS and recorder.clock[-1] == T0_NS + 9 * PERIOD_NS
    assert recorder.clock == sorted(recorder.clock)
    assert len(recorder.clock) > 11  # /clock also ticks between messages


def test_start_skips_the_beginning_but_keeps_latched_topics(tmp_path, ros_context):
    from std_msgs.msg import String

    bag = make_string_bag(tmp_path / "strings")
    recorder = Recorder(ros_context, {"/data": String, "/latched": String}, latched=("/latched",))
    try:
        process = start_replay(bag, "--start", "0.45", "--rate", "5", "--wait-for", "/data")
        recorder.spin_until(lambda: process.poll() is not None and len(recorder.received["/data"]) == 5
                            and recorder.received["/latched"], 60)
        output = finish(process)
    finally:
        recorder.close()
    assert process.returncode == 0, output
    assert [m.data for _, m in recorder.received["/data"]] == ["5", "6", "7", "8", "9"]
    assert [m.data for _, m in recorder.received["/latched"]] == ["calibration"]


def test_loop_starts_again_and_stamps_jump_back(tmp_path, ros_context):
    from std_msgs.msg import String

    bag = make_string_bag(tmp_path / "strings", count=4)
    recorder = Recorder(ros_context, {"/data": String})
    process = start_replay(bag, "--loop", "--rate", "10", "--wait-for", "/data")
    try:
        recorder.spin_until(lambda: len(recorder.received["/data"]) >= 10, 60)
    finally:
        process.send_signal(signal.SIGINT)
        output = finish(process)
        recorder.close()
    values = [int(m.data) for _, m in recorder.received["/data"]]
    assert values[:10] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1], output
    jumps = [i for i in range(1, len(recorder.clock)) if recorder.clock[i] < recorder.clock[i - 1]]
    assert jumps, "the /clock must jump back when the bag starts again"
    assert all(recorder.clock[j] == T0_NS for j in jumps)
    assert process.returncode == 0 and "replay stopped by SIGINT" in output, output


def test_a_nine_day_gap_between_scenes_is_skipped_and_clock_jumps(tmp_path, ros_context):
    from std_msgs.msg import Header

    bag, stamps = make_two_scene_bag(tmp_path / "two_scenes")
    recorder = Recorder(ros_context, {"/data": Header})
    try:
        process = start_replay(bag, "--wait-for", "/data")
        recorder.spin_until(lambda: len(recorder.received["/data"]) == len(stamps), 30)
        recorder.spin_until(lambda: process.poll() is not None, 10)
        output = finish(process, timeout=10)
    finally:
        recorder.close()
    assert process.returncode == 0, output
    data = recorder.received["/data"]
    assert [stamp_ns(m) for _, m in data] == stamps and [m.frame_id for _, m in data] == [str(i) for i in range(10)]
    assert data[-1][0] - data[0][0] < 5.0, "two 0.4 s scenes must play in about a second, not nine days"
    assert "skipping a 777599.6 s (9.0 days) gap" in output and "1 gap(s) of 777599.6 s skipped" in output, output
    steps = [b - a for a, b in zip(recorder.clock, recorder.clock[1:])]
    assert recorder.clock == sorted(recorder.clock) and recorder.clock[-1] == stamps[-1]
    assert max(steps) == stamps[5] - stamps[4], "/clock jumps from the last message of scene 1 to scene 2"


def test_max_gap_zero_keeps_the_recorded_silence(tmp_path, ros_context):
    """In process: --max-gap 0 waits through the gap (a stop request ends it), the default skips and counts it."""
    import threading

    import rclpy

    from distillnerf_ros.bag.replay import BagReplayer, StopRequest

    bag, stamps = make_two_scene_bag(tmp_path / "two_scenes")
    node = rclpy.create_node("replay_gaps", context=ros_context)
    try:
        stop = StopRequest()
        threading.Timer(1.0, stop.set, args=("test",)).start()
        waiting = BagReplayer(node, bag).play(rate=10, max_gap=0, stop=stop)
        assert waiting.published["/data"] == 5 and waiting.gaps_skipped == 0 and waiting.wall_seconds < 3
        skipping = BagReplayer(node, bag).play(rate=10)
        assert skipping.published["/data"] == 10 and skipping.gaps_skipped == 1
        assert skipping.gap_seconds_skipped == pytest.approx((stamps[5] - stamps[4]) / 1e9)
    finally:
        node.destroy_node()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_replay_cleanly(tmp_path, ros_context, signum):
    from std_msgs.msg import String

    bag = make_string_bag(tmp_path / "strings", count=4)
    recorder = Recorder(ros_context, {"/data": String})
    process = start_replay(bag, "--loop", "--wait-for", "/data")
    try:
        recorder.spin_until(lambda: len(recorder.received["/data"]) >= 3, 30)
        assert recorder.received["/data"], "the replay never published"
    finally:
        process.send_signal(signum)
        sent = time.monotonic()
        output = finish(process, timeout=10)
        recorder.close()
    assert time.monotonic() - sent < 5.0, output
    assert process.returncode == 0, output  # like `ros2 bag play`: being stopped is the normal end of a player
    assert f"replay stopped by {signal.Signals(signum).name} after " in output, output
    assert "Traceback" not in output and "RCLError" not in output, output


def test_replay_errors(tmp_path):
    from distillnerf.cli import main

    (tmp_path / "empty").mkdir()
    process = subprocess.run([sys.executable, "-m", "distillnerf.cli", "replay", str(tmp_path / "empty")],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 1 and "not a ROS 2 bag folder" in process.stderr
    assert main(["replay", str(tmp_path / "empty"), "--rate", "0"]) == 2
    assert main(["replay", str(tmp_path / "empty"), "--start", "-1"]) == 2


def test_messages_from_a_start_offset_put_the_latched_message_first(tmp_path, ros_context):
    import rclpy

    from distillnerf_ros.bag.replay import BagReplayer

    bag = make_string_bag(tmp_path / "strings")
    node = rclpy.create_node("replay_unit", context=ros_context)
    try:
        replayer = BagReplayer(node, bag)
        assert replayer.topics == ["/data", "/latched"] and replayer.latched == {"/latched"}
        listed = list(replayer.messages(start_s=0.25))
        assert [m.topic for m in listed[:2]] == ["/latched", "/data"]
        assert [m.timestamp_ns for m in listed[1:]] == [T0_NS + i * PERIOD_NS for i in range(3, 10)]
        assert len(list(replayer.messages())) == 11
    finally:
        node.destroy_node()
