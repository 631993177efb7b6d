"""The node's logic in-process, through its InferenceBackend seam: input checks, synchronisation, dropout,
model inputs, skipping without subscribers, diagnostics, the query parameter. (The end-to-end tests in
test_node_e2e.py run the real model in a separate process over DDS.)"""

from __future__ import annotations

import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed")
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402

from distillnerf.perception import QueryUnavailable  # noqa: E402
from distillnerf.rig import NUSCENES_CAMERAS, load_rig  # noqa: E402
from distillnerf_ros.node import DistillNerfNode  # noqa: E402
from distillnerf_ros.parameters import NodeParameters  # noqa: E402


class RecordingBackend:
    """Returns arrays of the documented shapes and records what the node gave it; no query encoder."""

    camera_names = NUSCENES_CAMERAS
    input_size = (64, 32)
    render_size = (32, 16)
    device = "cpu"

    def __init__(self):
        self.calls = []
        self.warmed = False

    def warmup(self):
        self.warmed = True

    def infer(self, images, intrinsics, cam_to_ego, valid=None, occupancy_threshold=None):
        self.calls.append((images, intrinsics, cam_to_ego, valid))
        self.thresholds = getattr(self, "thresholds", []) + [occupancy_threshold]
        n, (w, h) = len(images), self.render_size
        probability = np.zeros((200, 200, 16), np.float32)
        probability[100, 100, 4] = 0.9
        return SimpleNamespace(depth=np.full((n, h, w), 7.0, np.float32), depth_intrinsics=np.stack([np.eye(3)] * n),
                               rgb=np.zeros((n, 32, 64, 3), np.uint8), occupancy_probability=probability,
                               occupied=probability > (0.5 if occupancy_threshold is None else occupancy_threshold),
                               semantics=np.where(probability > (0.5 if occupancy_threshold is None else
                                                                 occupancy_threshold), 4, 17).astype(np.uint8),
                               camera_visible=np.ones((200, 200, 16), np.uint8), voxel_centers=np.zeros((1, 3)),
                               timings_ms={})

    def query(self, text):
        raise QueryUnavailable("no text encoder loaded")


def jpeg_msg(camera: str, seconds: float, size=(160, 90)) -> CompressedImage:
    ok, data = cv2.imencode(".jpg", np.full((size[1], size[0], 3), 128, np.uint8))
    msg = CompressedImage(format="jpeg")
    msg.header.frame_id = camera
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(seconds), int(round((seconds % 1) * 1e9))
    msg.data = data.tobytes()
    return msg


def info_msg(camera: str, size=(160, 90), k=None) -> CameraInfo:
    msg = CameraInfo(width=size[0], height=size[1])
    msg.header.frame_id = camera
    msg.k = list(np.asarray(k if k is not None else [[100.0, 0, 80], [0, 100.0, 45], [0, 0, 1]],
                            dtype=float).reshape(-1))
    return msg


@pytest.fixture
def node(ros_context):
    backend = RecordingBackend()
    overrides = [Parameter("camera_timeout", value=0.3), Parameter("warning_period", value=0.0),
                 Parameter("use_tf", value=False)]
    # no worker thread: the tests take the sets themselves and call process()
    node = DistillNerfNode(backend=backend, start_worker=False, context=ros_context, parameter_overrides=overrides)
    assert not node.worker.alive
    yield node
    node.close()


def feed(node, seconds, cameras=NUSCENES_CAMERAS, **kwargs):
    for index, camera in enumerate(cameras):
        node.on_image(camera, jpeg_msg(camera, seconds + 0.008 * index, **kwargs))


def test_backend_is_warmed_up_and_a_complete_set_reaches_the_slot(node):
    assert node.backend.warmed
    for camera in NUSCENES_CAMERAS:
        node.on_camera_info(camera, info_msg(camera))
    feed(node, 10.0)
    frames = node.worker.take(timeout=1.0)
    assert frames is not None and set(frames) == set(NUSCENES_CAMERAS)


def test_model_inputs_are_resized_with_scaled_intrinsics_and_rig_extrinsics(node):
    for camera in NUSCENES_CAMERAS:
        node.on_camera_info(camera, info_msg(camera))
    feed(node, 10.0)
    images, intrinsics, cam_to_ego, valid = node.prepare_inputs(node.worker.take(timeout=1.0))
    assert valid == [True] * 6
    assert all(image.shape == (32, 64, 3) and image.dtype == np.uint8 for image in images)
    assert np.allclose(intrinsics[0], [[40.0, 0, 32.0], [0, 100 * 32 / 90, 45 * 32 / 90], [0, 0, 1]])
    rig = load_rig("nuscenes")
    assert np.allclose(cam_to_ego[1], rig.camera("CAM_FRONT").cam_to_ego)


def test_without_camera_info_the_rig_intrinsics_are_used(node):
    feed(node, 10.0, size=(1600, 900))
    _, intrinsics, _, _ = node.prepare_inputs(node.worker.take(timeout=1.0))
    expected = load_rig("nuscenes").camera("CAM_FRONT").resized(64, 32).intrinsics
    assert np.allclose(intrinsics[1], expected)


@pytest.mark.parametrize("bad, kind", [
    (lambda m: setattr(m, "data", bytes(m.data)[:200]), "jpeg"),
    (lambda m: setattr(m, "data", b""), "empty"),
])
def test_bad_image_is_dropped_counted_and_the_node_carries_on(node, bad, kind):
    msg = jpeg_msg("CAM_FRONT", 10.0)
    bad(msg)
    node.on_image("CAM_FRONT", msg)
    assert node.health.cameras["CAM_FRONT"].problems[kind] == 1
    feed(node, 11.0)
    assert node.worker.take(timeout=1.0) is not None


def test_image_size_disagreeing_with_camera_info_is_dropped(node):
    node.on_camera_info("CAM_FRONT", info_msg("CAM_FRONT", size=(1600, 900)))
    feed(node, 10.0)  # the first image of another size waits for its camera_info ...
    feed(node, 10.5)  # ... a second one without it is dropped
    assert node.health.cameras["CAM_FRONT"].problems["size"] == 1
    assert node.worker.take(timeout=0.05) is None


def test_the_first_image_after_a_resolution_change_is_kept(node):
    """A driver switching resolution sends image and camera_info in either order: no image is lost."""
    for camera in NUSCENES_CAMERAS:
        node.on_camera_info(camera, info_msg(camera))
    feed(node, 10.0)
    assert node.worker.take(timeout=1.0) is not None
    big_k = [[200.0, 0, 160], [0, 200.0, 90], [0, 0, 1]]
    for index, camera in enumerate(NUSCENES_CAMERAS):  # images first, camera_info after (half the cameras)
        if index % 2:
            node.on_camera_info(camera, info_msg(camera, size=(320, 180), k=big_k))
        node.on_image(camera, jpeg_msg(camera, 11.0 + 0.008 * index, size=(320, 180)))
        if not index % 2:
            node.on_camera_info(camera, info_msg(camera, size=(320, 180), k=big_k))
    frames = node.worker.take(timeout=1.0)
    assert frames is not None and set(frames) == set(NUSCENES_CAMERAS)
    assert all(frame.size == (320, 180) for frame in frames.values())
    assert sum(sum(h.problems.values()) for h in node.health.cameras.values()) == 0
    _, intrinsics, _, _ = node.prepare_inputs(frames)
    assert np.allclose(intrinsics[0][0, 0], 200.0 * 64 / 320)


@pytest.mark.parametrize("k", [np.zeros((3, 3)), np.diag([np.nan, 1.0, 1.0])])
def test_zero_or_nan_intrinsics_drop_that_cameras_images_until_fixed(node, k):
    node.on_camera_info("CAM_BACK", info_msg("CAM_BACK", k=k))
    feed(node, 10.0)
    assert node.health.cameras["CAM_BACK"].problems["intrinsics"] >= 2  # the camera_info and the image
    node.on_camera_info("CAM_BACK", info_msg("CAM_BACK"))
    feed(node, 11.0)
    assert node.worker.take(timeout=1.0) is not None


def test_duplicate_and_backwards_stamps(node):
    feed(node, 10.0)
    assert node.worker.take(timeout=1.0) is not None
    node.on_image("CAM_FRONT", jpeg_msg("CAM_FRONT", 10.008))
    assert node.health.cameras["CAM_FRONT"].problems["duplicate_stamp"] == 1
    feed(node, 2.0)  # the bag looped
    assert node.health.resets == 1
    frames = node.worker.take(timeout=1.0)
    assert frames is not None and frames["CAM_FRONT"].header.stamp.sec == 2


def test_dropout_infers_from_the_other_cameras_and_reports_it(node):
    others = [c for c in NUSCENES_CAMERAS if c != "CAM_BACK"]
    deadline = time.monotonic() + 5.0
    stamp = 10.0
    while node.active_cameras != others and time.monotonic() < deadline:
        feed(node, stamp, cameras=others)
        stamp += 0.1
        time.sleep(0.05)
        node.check_dropout()
    assert node.active_cameras == others
    feed(node, stamp + 1.0, cameras=others)
    frames = node.worker.take(timeout=1.0)
    assert frames is not None and set(frames) == set(others)
    _, _, _, valid = node.prepare_inputs(frames)
    assert valid == [camera != "CAM_BACK" for camera in NUSCENES_CAMERAS]
    statuses = {s.name: s for s in node.health.statuses()}
    assert statuses["distillnerf: input CAM_BACK"].level == 1 and "missing" in statuses["distillnerf: input CAM_BACK"].message
    assert "CAM_BACK" in statuses["distillnerf: synchronizer"].values["missing_cameras"]


def test_worker_skips_the_model_without_subscribers_but_counts(ros_context):
    backend = RecordingBackend()
    node = DistillNerfNode(backend=backend, context=ros_context, parameter_overrides=[
        Parameter("use_tf", value=False)])
    try:
        feed(node, 10.0)
        deadline = time.monotonic() + 5.0
        while node.health.skipped_no_subscribers == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert node.health.skipped_no_subscribers == 1 and backend.calls == []
    finally:
        node.close()


def test_query_without_text_encoder_warns_once_and_publishes_nothing(node, ros_context):
    from sensor_msgs.msg import PointCloud2

    sink = rclpy.create_node("sink", context=ros_context)
    sink.create_subscription(PointCloud2, "/distillnerf/output/feature_query", lambda m: None, 1)
    try:
        assert node.set_parameters([Parameter("query_text", value="a car")])[0].successful
        deadline = time.monotonic() + 5.0
        while node.outputs.query.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        node.outputs.publish_query(SimpleNamespace(), node.params.query_text)
        node.outputs.publish_query(SimpleNamespace(), node.params.query_text)
        assert node.outputs._query_unavailable_warned and "unavailable" in node.health.query_state
    finally:
        sink.destroy_node()


class QueryBackend(RecordingBackend):
    """A backend with a text encoder: the similarity depends on the text."""

    def __init__(self):
        super().__init__()
        self.queries = []

    def query(self, text):
        self.queries.append(text)
        points = np.array([[1.0, 2.0, 0.5], [3.0, -1.0, 1.0]], np.float32)
        return points, np.array([len(text) / 10.0, 0.1], np.float32)


def test_query_cloud_follows_the_query_text(ros_context):
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header

    from distillnerf_ros.output_messages import point_cloud_to_array

    node = DistillNerfNode(backend=QueryBackend(), context=ros_context, parameter_overrides=[
        Parameter("use_tf", value=False)])
    sink = rclpy.create_node("query_sink", context=ros_context)
    received = []
    sink.create_subscription(PointCloud2, "/distillnerf/output/feature_query", received.append, 10)
    try:
        deadline = time.monotonic() + 10.0
        while node.outputs.query.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        header = Header(frame_id="base_link")
        node.outputs.publish_query(header, node.params.query_text)
        assert node.backend.queries == []  # no query text: nothing asked, nothing published
        node.set_parameters([Parameter("query_text", value="car")])
        node.outputs.publish_query(header, node.params.query_text)
        node.on_query(SimpleNamespace(data="traffic cone"))  # the ~/input/query topic sets the same parameter
        assert node.get_parameter("query_text").value == "traffic cone"
        node.outputs.publish_query(header, node.params.query_text)
        from rclpy.executors import SingleThreadedExecutor

        executor = SingleThreadedExecutor(context=ros_context)
        executor.add_node(sink)
        deadline = time.monotonic() + 10.0
        while len(received) < 2 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        executor.shutdown()
        assert node.backend.queries == ["car", "traffic cone"]
        first, second = (point_cloud_to_array(m) for m in received[:2])
        assert received[0].header.frame_id == "base_link" and [f.name for f in received[0].fields][-1] == "intensity"
        assert np.allclose(first["x"], [1.0, 3.0]) and first["intensity"][0] == pytest.approx(0.3)
        assert second["intensity"][0] == pytest.approx(1.2)  # the cloud changed with the query
    finally:
        sink.destroy_node()
        node.close()


def test_extrinsics_prefer_tf_fall_back_to_the_rig_and_cache():
    from geometry_msgs.msg import TransformStamped

    from distillnerf_ros.calibration import Extrinsics

    class FakeTfBuffer:
        def __init__(self):
            self.available = False
            self.lookups = 0

        def lookup_transform(self, target, source, time):
            self.lookups += 1
            if not self.available:
                raise LookupError(f"{target} <- {source} not yet")
            transform = TransformStamped()
            transform.transform.translation.x = 1.5
            transform.transform.rotation.w = 1.0
            return transform

    rig = load_rig("nuscenes")
    buffer = FakeTfBuffer()
    warnings = []
    extrinsics = Extrinsics(rig, "base_link", buffer, warnings.append)
    assert np.allclose(extrinsics.cam_to_base("CAM_FRONT", "CAM_FRONT"), rig.camera("CAM_FRONT").cam_to_ego)
    assert extrinsics.sources["CAM_FRONT"] == "rig" and len(warnings) == 1
    buffer.available = True
    pose = extrinsics.cam_to_base("CAM_FRONT", "CAM_FRONT")
    assert np.allclose(pose[:3, 3], [1.5, 0, 0]) and np.allclose(pose[:3, :3], np.eye(3))
    assert extrinsics.sources["CAM_FRONT"] == "tf"
    lookups = buffer.lookups
    extrinsics.cam_to_base("CAM_FRONT", "CAM_FRONT")
    assert buffer.lookups == lookups  # rigid: looked up once
    assert len(warnings) == 1


def test_one_occupancy_threshold_decides_voxels_labels_and_queries(node):
    """The node's parameter reaches the backend, which applies it once; the node never re-thresholds."""
    from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: F401  (rclpy is present: the fixture ran)
    from rclpy.parameter import Parameter as RosParameter

    for camera in NUSCENES_CAMERAS:
        node.on_camera_info(camera, info_msg(camera))
    node.set_parameters([RosParameter("occupancy_threshold", value=0.95)])
    feed(node, 10.0)
    node.process(node.worker.take(timeout=1.0))
    assert node.backend.thresholds[-1] == pytest.approx(0.95)  # the fake's only voxel (0.9) is then free
    node.set_parameters([RosParameter("occupancy_threshold", value=0.2)])
    feed(node, 11.0)
    node.process(node.worker.take(timeout=1.0))
    assert node.backend.thresholds[-1] == pytest.approx(0.2)
    # negative = the checkpoint's calibrated threshold (the backend's own default), the parameter file's default
    node.set_parameters([RosParameter("occupancy_threshold", value=-1.0)])
    feed(node, 12.0)
    node.process(node.worker.take(timeout=1.0))
    assert node.backend.thresholds[-1] is None
    assert NodeParameters.defaults().occupancy_threshold < 0


def test_a_late_image_is_not_a_missing_camera_and_a_stopped_one_is(node):
    """Dropout by stamps: images that arrive late (the node busy) keep their camera; a camera whose stamps fall
    behind the others' by camera_timeout is left out, and counted, and comes back when it delivers again."""
    for camera in NUSCENES_CAMERAS:
        node.on_camera_info(camera, info_msg(camera))
    stamp = 10.0
    for _ in range(3):
        feed(node, stamp)
        stamp += 0.5
    time.sleep(0.6)  # the node "busy": wall-clock silence longer than camera_timeout (0.3 s) for every camera
    late = NUSCENES_CAMERAS[0]
    feed(node, stamp, cameras=NUSCENES_CAMERAS[1:])
    node.check_dropout()
    assert node.active_cameras == list(NUSCENES_CAMERAS)  # one set's worth of lag is not evidence
    feed(node, stamp, cameras=[late])  # its late image arrives, with its own stamp
    node.check_dropout()
    assert node.active_cameras == list(NUSCENES_CAMERAS) and node.health.cameras[late].dropouts == 0
    for _ in range(3):  # now it stops: the others move on by 1.5 s of stamps
        stamp += 0.5
        feed(node, stamp, cameras=NUSCENES_CAMERAS[1:])
    node.check_dropout()
    assert late not in node.active_cameras and node.health.cameras[late].dropouts == 1
    stamp += 0.5
    feed(node, stamp)
    node.check_dropout()
    assert node.active_cameras == list(NUSCENES_CAMERAS) and node.health.cameras[late].recoveries == 1
    status = {s.name: s for s in node.health.statuses()}[f"distillnerf: input {late}"]
    assert status.values["dropouts"] == "1" and status.values["recoveries"] == "1"


def test_raw_images_over_best_effort_are_warned_about(ros_context):
    backend = RecordingBackend()
    overrides = [Parameter("compressed", value=False), Parameter("input_qos", value="sensor_data"),
                 Parameter("use_tf", value=False)]
    node = DistillNerfNode(backend=backend, context=ros_context, parameter_overrides=overrides)
    try:
        assert "best effort" in node.health.model["input_qos_warning"]
    finally:
        node.close()
    reliable = DistillNerfNode(backend=RecordingBackend(), context=ros_context, parameter_overrides=[
        Parameter("compressed", value=False), Parameter("input_qos", value="reliable"), Parameter("use_tf", value=False)])
    try:
        assert "input_qos_warning" not in reliable.health.model
    finally:
        reliable.close()


def test_a_frame_id_other_than_the_rig_camera_is_reported_once(node):
    for camera in NUSCENES_CAMERAS:
        node.on_camera_info(camera, info_msg(camera))
    msg = jpeg_msg("CAM_FRONT", 10.0)
    msg.header.frame_id = "cam_front_optical"
    node.on_image("CAM_FRONT", msg)
    assert node.health.model["frame_id_CAM_FRONT"] == "cam_front_optical (rig entry CAM_FRONT)"
    assert "CAM_BACK" not in "".join(k for k in node.health.model if k.startswith("frame_id_"))


def patterned_jpeg(camera: str, seconds: float, size=(160, 90)) -> CompressedImage:
    """A grid of lines: distortion moves them, so rectified and unrectified images differ."""
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[::10] = 255
    pixels[:, ::10] = 255
    ok, data = cv2.imencode(".png", pixels)  # lossless: the difference is the rectification's alone
    msg = CompressedImage(format="png")
    msg.header.frame_id = camera
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(seconds), int(round((seconds % 1) * 1e9))
    msg.data = data.tobytes()
    return msg


def distorted_info(camera: str, model: str, d) -> CameraInfo:
    msg = info_msg(camera)
    msg.distortion_model, msg.d = model, [float(v) for v in d]
    return msg


@pytest.mark.parametrize("model, d", [("plumb_bob", [-0.3, 0.1, 0.0, 0.0, 0.0]),
                                      ("equidistant", [0.1, -0.05, 0.01, 0.0])])
def test_distorted_cameras_are_rectified_before_the_model(node, model, d):
    def model_images(infos):
        for camera in NUSCENES_CAMERAS:
            node.on_camera_info(camera, infos(camera))
        stamp = 20.0 + len(node.backend.calls)
        for index, camera in enumerate(NUSCENES_CAMERAS):
            node.on_image(camera, patterned_jpeg(camera, stamp + 0.008 * index))
        node.process(node.worker.take(timeout=1.0))
        return node.backend.calls[-1][0]

    plain = model_images(lambda camera: info_msg(camera))
    rectified = model_images(lambda camera: distorted_info(camera, model, d) if camera == "CAM_FRONT"
                             else info_msg(camera))
    front = NUSCENES_CAMERAS.index("CAM_FRONT")
    assert np.abs(rectified[front].astype(int) - plain[front].astype(int)).mean() > 5  # not "the same as d = 0"
    others = [i for i in range(6) if i != front]
    assert all(np.array_equal(rectified[i], plain[i]) for i in others)


def test_an_unknown_distortion_model_is_refused_with_a_reason(node):
    node.on_camera_info("CAM_FRONT", distorted_info("CAM_FRONT", "fisheye_magic", [0.1]))
    assert node.health.cameras["CAM_FRONT"].problems["distortion"] == 1
    assert "fisheye_magic" in node.health.cameras["CAM_FRONT"].last_problem
    feed(node, 10.0)
    assert node.worker.take(timeout=0.05) is None  # its images wait for a usable camera_info, none is guessed


def test_a_camera_without_extrinsics_is_an_error_in_diagnostics_until_tf_brings_them():
    from geometry_msgs.msg import TransformStamped

    from distillnerf.rig import Rig
    from distillnerf_ros.calibration import Extrinsics
    from distillnerf_ros.conversions import InputError
    from distillnerf_ros.diagnostics import ERROR, OK, Health

    class LateTf:
        available = False

        def lookup_transform(self, target, source, time):
            if not self.available:
                raise LookupError("not yet")
            transform = TransformStamped()
            transform.transform.rotation.w = 1.0
            return transform

    full = load_rig("nuscenes")
    rig = Rig(full.name, tuple(c for c in full.cameras if c.name != "CAM_BACK"), frame_id=full.frame_id)
    health = Health("distillnerf", NUSCENES_CAMERAS)
    tf = LateTf()
    extrinsics = Extrinsics(rig, "base_link", tf, warn=lambda text: None, report=health.calibration)
    with pytest.raises(InputError):
        extrinsics.cam_to_base("CAM_BACK", "CAM_BACK")
    status = {s.name: s for s in health.statuses()}["distillnerf: input CAM_BACK"]
    assert status.level == ERROR and "no extrinsics" in status.message
    tf.available = True
    extrinsics.cam_to_base("CAM_BACK", "CAM_BACK")
    assert {s.name: s for s in health.statuses()}["distillnerf: input CAM_BACK"].level == OK


def test_input_qos_auto_follows_reliable_publishers(ros_context):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    node = DistillNerfNode(backend=RecordingBackend(), context=ros_context, parameter_overrides=[
        Parameter("compressed", value=False), Parameter("use_tf", value=False)])
    assert node.params.input_qos == "auto"
    driver = rclpy.create_node("reliable_driver", context=ros_context)
    driver.create_publisher(Image, "/distillnerf/input/CAM_FRONT/image",
                            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    driver.create_publisher(Image, "/distillnerf/input/CAM_BACK/image",
                            QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(driver)
    try:
        deadline = time.monotonic() + 10.0
        while "1 reliable" not in node.inputs.qos_summary() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert node.inputs.qos_summary().startswith("auto: 1 reliable")  # CAM_FRONT's image only
        assert "best effort" in node.health.model["input_qos_warning"]  # CAM_BACK's raw images: said
    finally:
        executor.shutdown()
        driver.destroy_node()
        node.close()


def test_a_camera_whose_queue_lags_but_keeps_delivering_is_not_missing():
    """A node that falls behind takes one queued image per camera in turn: a camera whose images are two sets
    behind the others' but arrive between theirs is late, not missing; once it stops delivering it is."""
    from distillnerf_ros.diagnostics import Health

    health = Health("distillnerf", ["A", "B"])
    ns = 1_000_000_000

    def deliver(camera, stamp_s):
        health.received(camera)
        health.stamped(camera, int(stamp_s * ns))

    for k in range(3):  # B's queue is three sets behind A's, and the node takes one image of each in turn
        deliver("A", 10.0 + 0.5 * (k + 3))
        deliver("B", 10.0 + 0.5 * k)
    assert health.silent_cameras(timeout=1.0, slop=0.06) == []
    for k in range(3, 5):  # B stops: A delivers on alone
        deliver("A", 10.0 + 0.5 * (k + 3))
    assert health.silent_cameras(timeout=1.0, slop=0.06) == ["B"] and health.cameras["B"].dropouts == 1
