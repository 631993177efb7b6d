"""End to end over real DDS: the node in its own process with the REAL model (tiny config, seeded random weights),
fed the real nuScenes frames; every output checked for frame, stamp, size and encoding; every kind of bad input
tried (the node must keep publishing); a camera dropout; the feature query; and a memory soak."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed")
pytest.importorskip("distillnerf_msgs.msg", reason="distillnerf_msgs is not built (run make setup)")

from distillnerf.rig import NUSCENES_CAMERAS  # noqa: E402
from distillnerf_ros.conversions import stamp_to_nanoseconds  # noqa: E402
from distillnerf_ros.output_messages import point_cloud_to_array  # noqa: E402
from distillnerf_ros.harness import FramePlayer, load_nuscenes_samples, resized_frame  # noqa: E402
from distillnerf_ros.node_process import NodeProcess, ros_arguments  # noqa: E402

TINY = dict(model_config="tiny", random_weights=True, device="cpu", use_tf=False, warning_period=0.0,
            occupancy_threshold=0.1)  # random weights give probabilities of ~0.1: voxels above this exist
NS = 1_000_000_000
T0 = 1_532_402_927 * NS  # the first nuScenes-tiny sample's second


class Outputs:
    """Subscribes (RELIABLE, as RViz) to every output of the node and keeps what arrives, per topic."""

    def __init__(self, node, cameras):
        from diagnostic_msgs.msg import DiagnosticArray
        from distillnerf_msgs.msg import SemanticOccupancy
        from nav_msgs.msg import OccupancyGrid
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from std_msgs.msg import Float64

        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.lock = threading.Lock()
        self.messages: dict[str, list] = {}
        topics = {"occupancy_grid": OccupancyGrid, "occupancy": PointCloud2, "semantic_occupancy": SemanticOccupancy,
                  "feature_query": PointCloud2}
        for camera in cameras:
            topics.update({f"{camera}/depth": Image, f"{camera}/camera_info": CameraInfo, f"{camera}/rgb": Image})
        self.subscriptions = []
        for name, kind in topics.items():
            self._subscribe(node, kind, f"/distillnerf/output/{name}", name, qos)
        self._subscribe(node, Float64, "/distillnerf/debug/processing_time_ms", "processing_time_ms", qos)
        self._subscribe(node, Float64, "/distillnerf/debug/pipeline_latency_ms", "pipeline_latency_ms", qos)
        self._subscribe(node, DiagnosticArray, "/diagnostics", "diagnostics", qos)

    def _subscribe(self, node, kind, topic, key, qos):
        def store(msg, key=key):
            with self.lock:
                self.messages.setdefault(key, []).append(msg)
        self.subscriptions.append(node.create_subscription(kind, topic, store, qos))

    def connected(self) -> bool:
        return all(s.get_publisher_count() > 0 for s in self.subscriptions)

    def with_stamp(self, key: str, stamp_ns: int):
        with self.lock:
            return [m for m in self.messages.get(key, []) if stamp_to_nanoseconds(m.header.stamp) == stamp_ns]

    def latest(self, key: str):
        with self.lock:
            found = self.messages.get(key, [])
            return found[-1] if found else None

    def count(self, key: str) -> int:
        with self.lock:
            return len(self.messages.get(key, []))


class Session:
    """A client node (this process) spinning in the background, with a player and the output collector."""

    def __init__(self, context, compressed: bool, reliable: bool, cameras=NUSCENES_CAMERAS):
        from rclpy.executors import SingleThreadedExecutor

        self.node = rclpy.create_node("e2e_client", context=context)
        self.player = FramePlayer(self.node, cameras=cameras, compressed=compressed, reliable=reliable)
        self.outputs = Outputs(self.node, cameras)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.spinning = True
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()
        self.last_base = None

    def _spin(self):
        while self.spinning:
            self.executor.spin_once(timeout_sec=0.05)

    def wait(self, condition, timeout: float, what: str, process: NodeProcess | None = None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if process is not None and not process.alive():
                break
            time.sleep(0.02)
        log = process.log()[-4000:] if process is not None else ""
        raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{log}")

    def send_until_output(self, frames, base_ns: int, process: NodeProcess, key: str = "occupancy_grid",
                          skip=(), timeout: float = 60.0, encoding: str = "rgb8", retry_every: float = 8.0) -> int:
        """Publish the set (again, one second later each time, in case discovery lost it) until the node
        answers with an output of that set's stamp; returns the stamp."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stamp = self.player.publish_set(frames, base_ns, skip=skip, encoding=encoding)
            answer_by = time.monotonic() + retry_every
            while time.monotonic() < min(answer_by, deadline):
                if self.outputs.with_stamp(key, stamp):
                    self.last_base = base_ns
                    return stamp
                assert process.alive(), f"node died:\n{process.log()[-4000:]}"
                time.sleep(0.02)
            base_ns += NS
        raise AssertionError(f"no {key} for a set sent at {base_ns} within {timeout} s\n{process.log()[-4000:]}\n"
                             f"{self.diagnostics_summary()}")

    def diagnostics_summary(self) -> str:
        report = self.outputs.latest("diagnostics")
        if report is None:
            return "no /diagnostics received"
        return "\n".join(f"{s.name}: {s.message} " + " ".join(f"{v.key}={v.value}" for v in s.values)
                         for s in report.status)

    def wait_for_all(self, stamp: int, cameras, process: NodeProcess, rgb: bool = False) -> None:
        keys = ["occupancy_grid", "occupancy", "semantic_occupancy"]
        keys += [f"{c}/{kind}" for c in cameras for kind in ("depth", "camera_info") + (("rgb",) if rgb else ())]
        self.wait(lambda: all(self.outputs.with_stamp(key, stamp) for key in keys), 30,
                  f"every output of the set at {stamp}", process)

    def close(self):
        self.spinning = False
        self.thread.join(5.0)
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.fixture(scope="module")
def samples(nuscenes_tiny):
    return load_nuscenes_samples(nuscenes_tiny, NUSCENES_CAMERAS)


def start_node(**parameters) -> NodeProcess:
    return NodeProcess(ros_arguments({**TINY, **parameters})).start()


def check_outputs(outputs: Outputs, stamp: int, cameras, frames, render_size, rgb_size=None):
    grid = outputs.with_stamp("occupancy_grid", stamp)[0]
    assert grid.header.frame_id == "base_link"
    assert (grid.info.width, grid.info.height) == (200, 200) and grid.info.resolution == pytest.approx(0.4)
    assert (grid.info.origin.position.x, grid.info.origin.position.y) == (-40.0, -40.0)
    values = set(np.asarray(grid.data, np.int8).tolist())
    assert values <= {-1, 0, 100} and len(grid.data) == 40000

    cloud = outputs.with_stamp("occupancy", stamp)[0]
    assert cloud.header.frame_id == "base_link"
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb", "probability", "label"]
    points = point_cloud_to_array(cloud)
    assert len(points) > 0 and np.all(points["probability"] >= 0.1)
    assert np.all(np.abs(points["x"]) < 40) and np.all(points["z"] > -1) and np.all(points["z"] < 5.4)

    semantic = outputs.with_stamp("semantic_occupancy", stamp)[0]
    assert semantic.header.frame_id == "base_link" and list(semantic.size) == [200, 200, 16]
    labels = np.frombuffer(bytes(semantic.labels), np.uint8)
    assert len(labels) == 640000 and len(semantic.camera_visible) == 640000
    assert semantic.class_names[-1] == "free" and int((labels != 17).sum()) == len(points)

    for camera in cameras:
        depth = outputs.with_stamp(f"{camera}/depth", stamp)[0]
        assert depth.header.frame_id == camera and depth.encoding == "32FC1"
        assert (depth.width, depth.height) == render_size and depth.step == render_size[0] * 4
        metres = np.frombuffer(bytes(depth.data), np.float32)
        assert np.all(np.isfinite(metres)) and metres.max() > 0
        info = outputs.with_stamp(f"{camera}/camera_info", stamp)[0]
        assert info.header.frame_id == camera and (info.width, info.height) == render_size
        k = np.reshape(info.k, (3, 3))
        assert k[0, 0] > 0 and 0 < k[0, 2] < render_size[0] and 0 < k[1, 2] < render_size[1]
        if rgb_size is not None:
            rgb = outputs.with_stamp(f"{camera}/rgb", stamp)[0]
            assert rgb.encoding == "rgb8" and (rgb.width, rgb.height) == rgb_size and rgb.header.frame_id == camera
    assert outputs.count("processing_time_ms") > 0 and outputs.latest("processing_time_ms").data > 0
    assert outputs.count("pipeline_latency_ms") > 0


def test_compressed_outputs_bad_inputs_dropout_and_query(ros_context, samples):
    small = [{c: resized_frame(f, 400, 225) for c, f in sample.items()} for sample in samples]
    # the default input QoS (auto) with reliable cameras: the node follows them to reliable, so no full-size JPEG
    # is lost on a busy loopback; images paced as real cameras fire. The raw-image test below sets the QoS itself
    process = start_node(compressed=True, publish_rgb=True, camera_timeout=4.0)
    session = Session(ros_context, compressed=True, reliable=True)
    try:
        assert "distillnerf ready:" in process.log() and "compressed images" in process.log()
        session.wait(lambda: session.player.connected() and session.outputs.connected(), 30, "discovery", process)
        session.wait(lambda: any(kv.key == "input_qos" and kv.value.startswith("auto: 12 reliable")
                                 for s in getattr(session.outputs.latest("diagnostics"), "status", [])
                                 for kv in s.values), 30, "the inputs following the reliable cameras", process)

        # 1. the real full-size frames: every output, right frames, stamps, sizes, encodings
        stamp = session.send_until_output(samples[0], T0, process)
        session.wait_for_all(stamp, NUSCENES_CAMERAS, process, rgb=True)
        assert stamp == T0 + max(f.offset_ns for f in samples[0].values())  # the set's (newest) stamp
        check_outputs(session.outputs, stamp, NUSCENES_CAMERAS, samples[0], render_size=(32, 18), rgb_size=(64, 36))
        diagnostics = session.wait(lambda: session.outputs.latest("diagnostics"), 10, "/diagnostics", process)
        names = {status.name for status in diagnostics.status}
        assert {"distillnerf: inference", "distillnerf: synchronizer"} <= names
        assert {f"distillnerf: input {c}" for c in NUSCENES_CAMERAS} <= names

        # 2. the query: this model has no text encoder, so the documented warning and no feature cloud
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from std_msgs.msg import String

        query = session.node.create_publisher(String, "/distillnerf/input/query", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        query.publish(String(data="car"))
        assert process.wait_for_log("feature query set to 'car'", 20)
        base = T0 + 10 * NS
        session.send_until_output(small[1], base, process)
        assert process.wait_for_log("feature query 'car' not published: no text encoder", 20)
        assert session.outputs.count("feature_query") == 0

        # 3. every bad input: a warning naming it, and the next good set still produces outputs
        good = small[0]
        front = good["CAM_FRONT"]
        cases = [
            ("truncated JPEG", "no end-of-image marker", lambda s: session.player.images["CAM_FRONT"].publish(
                session.player.image_message("CAM_FRONT", s, data=front.jpeg[: len(front.jpeg) // 2]))),
            ("empty data", "empty compressed image", lambda s: session.player.images["CAM_FRONT"].publish(
                session.player.image_message("CAM_FRONT", s, data=b""))),
            ("garbage", "neither JPEG nor PNG", lambda s: session.player.images["CAM_FRONT"].publish(
                session.player.image_message("CAM_FRONT", s, data=b"\x00garbage" * 10))),
            ("size vs camera_info", "disagrees with camera_info", lambda s: (
                session.player.publish_info("CAM_FRONT", s, front.intrinsics, 1600, 900),
                session.player.images["CAM_FRONT"].publish(session.player.image_message("CAM_FRONT", s, front)))),
            ("zero intrinsics", "non-positive focal lengths", lambda s: (
                session.player.publish_info("CAM_FRONT", s, np.zeros((3, 3)), front.width, front.height),
                session.player.images["CAM_FRONT"].publish(session.player.image_message("CAM_FRONT", s, front)))),
            ("NaN intrinsics", "NaN", lambda s: session.player.publish_info(
                "CAM_FRONT", s, np.full((3, 3), np.nan), front.width, front.height)),
        ]
        base = T0 + 100 * NS
        for name, warning, send_bad in cases:
            mark = len(process.lines)
            for attempt in range(20):  # camera_info and image travel on separate topics: repeat until seen
                send_bad(base + attempt * NS // 10)
                if process.wait_for_log(warning, 1.0, start=mark):
                    break
            else:
                raise AssertionError(f"no warning for {name}:\n{process.log()[-3000:]}")
            base += 5 * NS
            session.send_until_output(good, base, process)
            base += 5 * NS

        # distortion: CAM_FRONT's CameraInfo says plumb_bob with a rectified camera P; its depth is published for
        # the rectified camera (d = 0, K from P at the render size); an unknown model is refused with a reason
        from sensor_msgs.msg import CameraInfo

        def distorted_info(stamp_ns, model, d, p_scale=0.8):
            info = CameraInfo(width=front.width, height=front.height, distortion_model=model, d=list(d))
            info.header.frame_id = "CAM_FRONT"
            info.header.stamp.sec, info.header.stamp.nanosec = divmod(int(stamp_ns), NS)
            k = np.asarray(front.intrinsics, dtype=float)
            info.k = k.reshape(-1).tolist()
            rectified = k.copy()
            rectified[0, 0] *= p_scale
            rectified[1, 1] *= p_scale
            info.p = np.hstack([rectified, np.zeros((3, 1))]).reshape(-1).tolist()
            return info, rectified

        for attempt in range(20):
            base += NS
            newest = session.player.publish_set(good, base, skip={"CAM_FRONT"})
            info, rectified = distorted_info(base, "plumb_bob", [-0.3, 0.1, 0.0, 0.0, 0.0])
            session.player.infos["CAM_FRONT"].publish(info)
            time.sleep(0.05)
            stamp_front = base + front.offset_ns
            session.player.images["CAM_FRONT"].publish(session.player.image_message("CAM_FRONT", stamp_front, front))
            stamp = max(newest, stamp_front)
            answer_by = time.monotonic() + 3.0
            while not (found := session.outputs.with_stamp("CAM_FRONT/camera_info", stamp)) \
                    and time.monotonic() < answer_by:
                time.sleep(0.02)
            if found:
                break
        else:
            raise AssertionError(f"no output for the distorted CAM_FRONT:\n{process.log()[-3000:]}")
        depth_info = found[-1]
        expected = np.diag([32 / front.width, 18 / front.height, 1.0]) @ rectified  # at the render size
        assert np.allclose(np.asarray(depth_info.k).reshape(3, 3), expected, rtol=1e-4)
        assert not any(depth_info.d)
        mark = len(process.lines)
        for attempt in range(20):
            session.player.infos["CAM_FRONT"].publish(distorted_info(base + attempt * NS // 10, "fisheye_magic",
                                                                     [0.1])[0])
            if process.wait_for_log("fisheye_magic", 1.0, start=mark):
                break
        assert "distortion" in process.wait_for_log("fisheye_magic", 1.0, start=mark)
        base += 5 * NS
        session.send_until_output(good, base, process)  # a plain CameraInfo again: CAM_FRONT back in the sets
        base += 5 * NS

        # duplicate stamps: the same set again is dropped (warned), then a new one goes through
        mark = len(process.lines)
        for _ in range(10):  # best effort may lose an image: repeating a duplicate is still a duplicate
            session.player.publish_set(good, session.last_base)
            if process.wait_for_log("repeats the previous image", 2.0, start=mark):
                break
        assert process.wait_for_log("repeats the previous image", 1.0, start=mark)
        # stamps jumping backwards (a looped bag): synchroniser reset, the old stamps are used
        mark = len(process.lines)
        looped = session.send_until_output(good, T0 + 50 * NS, process)
        assert process.wait_for_log("stamp jumped backwards", 5, start=mark)
        assert looped < base

        # 4. camera dropout: CAM_BACK stops; after camera_timeout the node infers from the other five
        base = T0 + 60 * NS
        stamp = session.send_until_output(good, base, process, skip={"CAM_BACK"}, timeout=60, retry_every=1.0)
        session.wait(lambda: session.outputs.with_stamp("CAM_FRONT/depth", stamp), 10, "CAM_FRONT depth", process)
        assert not session.outputs.with_stamp("CAM_BACK/depth", stamp)
        assert process.wait_for_log("no images from CAM_BACK", 5)
        report = session.wait(lambda: [s for m in [session.outputs.latest("diagnostics")] if m for s in m.status
                                       if s.name == "distillnerf: input CAM_BACK" and "missing" in s.message],
                              10, "CAM_BACK reported missing", process)
        assert report[0].level == b"\x01"
        assert process.alive()
    finally:
        session.close()
        code = process.stop()
    assert code == 0, process.log()[-3000:]


def test_raw_images_bgr_and_wrong_encoding(ros_context, samples):
    frames = {c: resized_frame(f, 320, 180) for c, f in samples[0].items()}
    process = start_node(compressed=False, input_qos="reliable")
    session = Session(ros_context, compressed=False, reliable=True)
    try:
        assert "raw images" in process.log()
        session.wait(lambda: session.player.connected() and session.outputs.connected(), 30, "discovery", process)
        stamp = session.send_until_output(frames, T0, process)
        session.wait_for_all(stamp, NUSCENES_CAMERAS, process)
        check_outputs(session.outputs, stamp, NUSCENES_CAMERAS, frames, render_size=(32, 18))
        assert session.outputs.count("CAM_FRONT/rgb") == 0  # publish_rgb is false by default

        for index, encoding in enumerate(("16UC1", "yuv422")):
            mark = len(process.lines)
            session.player.images["CAM_FRONT"].publish(session.player.image_message(
                "CAM_FRONT", T0 + (3 + index) * NS, data=b"\x00" * (320 * 180 * 2), encoding=encoding, size=(320, 180)))
            assert process.wait_for_log(f"unsupported image encoding '{encoding}'", 20, start=mark)
        session.send_until_output(frames, T0 + 5 * NS, process, encoding="bgr8")
    finally:
        session.close()
        code = process.stop()
    assert code == 0, process.log()[-3000:]


@pytest.mark.slow
def test_soak_500_small_sets_keeps_memory_flat(ros_context, samples, capsys):
    frames = {c: resized_frame(f, 160, 90, quality=80) for c, f in samples[0].items()}
    process = start_node(compressed=True)
    session = Session(ros_context, compressed=True, reliable=False)
    try:
        session.wait(lambda: session.player.connected() and session.outputs.connected(), 30, "discovery", process)
        session.send_until_output(frames, T0, process)
        def quiet_rss(base_ns: int) -> float:
            """RSS once the node has finished a marker set (inference allocations come and go within a set)."""
            stamp = session.send_until_output(frames, base_ns, process)
            session.wait(lambda: session.outputs.with_stamp("CAM_BACK_LEFT/camera_info", stamp), 20,
                         "the marker set's last output", process)
            return process.rss_mib()

        # Two warm-up rounds exactly like the measured ones, each ending in a reading that is not scored: the
        # allocator's arenas grow once over the first few hundred sets, then stay (CI, full suite, warm-up sets at
        # another pace: 1112, 1201, 1215, 1215, 1215, 1215 MiB).
        warm_rounds, rounds = 2, 5
        all_readings = []
        for round_ in range(warm_rounds + rounds):
            if round_ == warm_rounds:
                began = time.monotonic()  # the measured rounds' time only
            for index in range(100):
                session.player.publish_set(frames, T0 + (10 + 10 * round_) * NS + index * NS // 12, pace=0.0)
                time.sleep(1 / 40)  # 40 Hz, faster than this model's rate on 2 cores: the node must drop old sets
            all_readings.append(quiet_rss(T0 + (19 + 10 * round_) * NS))
        warm, readings = all_readings[:warm_rounds], all_readings[warm_rounds:]
        with capsys.disabled():
            print(f"\nsoak: 500 sets of 6x160x90 JPEG in {time.monotonic() - began:.1f} s after 200 warm-up sets "
                  f"(RSS {', '.join(f'{r:.1f}' for r in warm)} MiB); RSS MiB after 100, 200, ..., 500 sets: "
                  f"{', '.join(f'{r:.1f}' for r in readings)}")
        assert process.alive()
        # Quiet readings still swing by up to ~100 MiB (allocator arenas of the model's per-set tensors; 2000 sets
        # measured 752 -> 825, 794, 801, 728, 786, 779, 764, 784 MiB: no trend). A leak of 0.2 MiB per set or more
        # raises the later readings' ceiling past these bounds.
        assert max(readings[2:]) - max(readings[:2]) < 80.0, f"RSS kept growing: {all_readings}"
        assert readings[-1] - readings[0] < 100.0, f"RSS grew: {all_readings}"
    finally:
        session.close()
        code = process.stop()
    assert code == 0
