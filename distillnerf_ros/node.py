"""The ``distillnerf`` ROS 2 node: six camera streams in; occupancy, depth and feature queries out.

Flow: subscriptions (executor thread) check each image cheaply and feed the synchroniser; a complete set goes
into a queue of one; the worker thread decodes, runs the model and publishes. The executor never waits for the
model, so parameters, TF, the query topic and /diagnostics stay responsive, and a slow model drops old sets
instead of queueing them. Bad input is warned about (throttled), counted in /diagnostics and dropped.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import rclpy
from rclpy.exceptions import InvalidParameterTypeException, ParameterException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from distillnerf_ros import conversions as cv
from distillnerf_ros.calibration import Extrinsics
from distillnerf_ros.diagnostics import Health, ThrottledWarnings, to_diagnostic_array
from distillnerf_ros.parameters import NodeParameters, declare_parameters
from distillnerf_ros.synchronizer import LatestSlot, StampMonitor, make_synchronizer

NODE_NAME = "distillnerf"
READY_PREFIX = "distillnerf ready:"
#: Occ3D classes that are ground surface, free for the bird's-eye occupancy grid.
GROUND_LABELS = (11, 12, 13, 14)


class StartupError(RuntimeError):
    """A configuration the node cannot start with; ``main`` logs it and exits non-zero."""


class InferenceBackend(Protocol):
    """What the node needs from the model: ``distillnerf.perception.Perception`` is one (tests may pass others)."""

    camera_names: Sequence[str]
    input_size: tuple[int, int]
    render_size: tuple[int, int]
    device: str

    def warmup(self) -> None: ...

    def infer(self, images, intrinsics, cam_to_ego, valid=None, occupancy_threshold=None): ...

    def query(self, text: str): ...


def resolve_device(requested: str) -> tuple[str, str | None]:
    """(device, warning) for ``auto``/``cuda``/``cpu``; ``cuda`` without CUDA is a StartupError."""
    import torch

    available = torch.cuda.is_available()
    if requested == "cuda" and not available:
        raise StartupError("device 'cuda' requested but CUDA is not available to torch "
                           f"{torch.__version__} (no GPU or driver); use device:=auto or device:=cpu")
    if requested == "auto":
        return ("cuda", None) if available else ("cpu", "CUDA is not available: running the model on the CPU "
                                                        "(slow); set device:=cpu to silence this warning")
    return requested, None


def load_backend(params: NodeParameters, device: str) -> InferenceBackend:
    from distillnerf.perception import Perception

    if params.random_weights:
        if not params.model_config:
            raise StartupError("random_weights: true needs model_config (e.g. tiny)")
        return Perception.from_config(params.model_config, device=device, seed=params.random_seed)
    from distillnerf.checkpoint import SHIPPED_CHECKPOINTS

    checkpoint = Path(params.checkpoint) if params.checkpoint else SHIPPED_CHECKPOINTS / "cpu.pt"
    if not checkpoint.is_file():
        raise StartupError(f"checkpoint {checkpoint} not found: set the checkpoint parameter (or, for tests only, "
                           "random_weights: true with a model_config)")
    return Perception.from_checkpoint(str(checkpoint), device=device)


@dataclass
class CameraFrame:
    """One checked input image waiting for its set (``header`` makes it acceptable to message_filters)."""

    camera: str
    header: object
    msg: object
    size: tuple[int, int]  # (width, height) of the transmitted image
    intrinsics: np.ndarray  # K at ``size``


@dataclass
class CameraInfoEntry:
    intrinsics: np.ndarray
    size: tuple[int, int]


def input_topics(camera: str) -> dict[str, str]:
    """The node's private input topics of one camera (the launch file remaps these)."""
    return {"image": f"~/input/{camera}/image", "compressed": f"~/input/{camera}/image/compressed",
            "camera_info": f"~/input/{camera}/camera_info"}


def input_qos(name: str, depth: int) -> QoSProfile:
    reliability = ReliabilityPolicy.RELIABLE if name == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)


OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


class DistillNerfNode(Node):
    """See the module docstring. ``backend`` replaces model loading (tests, the bench); None loads per params."""

    def __init__(self, backend: InferenceBackend | None = None, **node_kwargs):
        super().__init__(NODE_NAME, **node_kwargs)
        started = time.monotonic()
        self.params = declare_parameters(self)
        p = self.params
        self._warnings = ThrottledWarnings(p.warning_period)
        self.stage_ms: dict[str, deque] = defaultdict(lambda: deque(maxlen=1000))
        self.counters: dict[str, int] = defaultdict(int)

        if backend is None:
            device, warning = resolve_device(p.device)
            if warning:
                self.get_logger().warning(warning)
            backend = load_backend(p, device)
        self.backend = backend
        unknown = [c for c in p.camera_names if c not in backend.camera_names]
        if unknown:
            raise StartupError(f"camera_names {unknown} are not cameras of the model ({list(backend.camera_names)})")
        backend.warmup()
        self.health = Health(NODE_NAME, p.camera_names, recent=max(p.warning_period, 1.0))
        self.health.model.update(device=str(backend.device), ready=True,
                                 input_size="x".join(map(str, backend.input_size)),
                                 render_size="x".join(map(str, backend.render_size)))
        if p.warmup_only:
            self._log_ready(time.monotonic() - started)
            return

        from distillnerf.occupancy import FREE_LABEL, OCC3D_CLASSES
        from distillnerf.rig import load_rig

        self._class_names, self._free_label = OCC3D_CLASSES, FREE_LABEL
        grid = getattr(backend, "grid", None)
        self._grid = (cv.VoxelGrid(tuple(grid.origin), tuple(grid.voxel_size), tuple(grid.size)) if grid is not None
                      else cv.OCC3D_GRID)
        self._rig = load_rig(p.calibration_file)
        self._extrinsics = Extrinsics.create(self, self._rig, p.base_frame, p.use_tf)
        if not self._extrinsics.uses_tf:  # the rig file is the only source: every camera must be in it
            missing = [c for c in p.camera_names if c not in self._rig.camera_names]
            if missing:
                raise StartupError(f"calibration file {self._rig.source or p.calibration_file} has no camera "
                                   f"{', '.join(missing)} (it has {', '.join(self._rig.camera_names)}); "
                                   "give one that has every camera in camera_names, or use_tf with TF")
        self._camera_info: dict[str, CameraInfoEntry | cv.InputError] = {}
        self._last_intrinsics: dict[str, np.ndarray] = {}
        self._query_text = p.query_text
        self._query_unavailable_warned = False
        self._publish_rgb = p.publish_rgb
        self._threshold = p.occupancy_threshold
        self._voxel_cap = p.voxel_cloud_max_points
        self._frame_id_noted: set[str] = set()

        self._create_publishers()
        self._decoders = ThreadPoolExecutor(max_workers=max(1, min(len(p.camera_names), os.cpu_count() or 1)),
                                            thread_name_prefix="distillnerf-decode")
        self._slot = LatestSlot()
        self._stamps = StampMonitor()
        self._sync_lock = threading.Lock()
        self._active = list(p.camera_names)
        self._sync = make_synchronizer(self._active, p.sync_slop, p.sync_queue_size, self._on_set)
        self.synchronizer_kind = type(self._sync).__name__
        self.add_on_set_parameters_callback(self._on_set_parameters)
        from std_msgs.msg import String

        self.create_subscription(String, "~/input/query", self._on_query, LATCHED_QOS)
        self.create_timer(p.diagnostics_period, self._publish_diagnostics)
        self.create_timer(min(p.camera_timeout / 2.0, 0.25), self._check_dropout)

        self._running = True
        self._worker = threading.Thread(target=self._work, name="distillnerf-inference", daemon=True)
        self._worker.start()
        self._subscribe_inputs()
        self._log_ready(time.monotonic() - started)

    # ------------------------------------------------------------------------------------------------ set-up
    def _log_ready(self, seconds: float) -> None:
        b, p = self.backend, self.params
        self.get_logger().info(
            f"{READY_PREFIX} device={b.device} cameras={len(p.camera_names)} input={b.input_size[0]}x"
            f"{b.input_size[1]} render={b.render_size[0]}x{b.render_size[1]} "
            f"{'compressed' if p.compressed else 'raw'} images, "
            f"sync={getattr(self, 'synchronizer_kind', 'none')}, loaded and warmed up in {seconds:.1f} s")

    def _create_publishers(self) -> None:
        from distillnerf_msgs.msg import SemanticOccupancy
        from nav_msgs.msg import OccupancyGrid
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from diagnostic_msgs.msg import DiagnosticArray
        from std_msgs.msg import Float64

        self.pub_grid = self.create_publisher(OccupancyGrid, "~/output/occupancy_grid", OUTPUT_QOS)
        self.pub_voxels = self.create_publisher(PointCloud2, "~/output/occupancy", OUTPUT_QOS)
        self.pub_semantic = self.create_publisher(SemanticOccupancy, "~/output/semantic_occupancy", OUTPUT_QOS)
        self.pub_query = self.create_publisher(PointCloud2, "~/output/feature_query", OUTPUT_QOS)
        self.pub_depth, self.pub_depth_info, self.pub_rgb = {}, {}, {}
        for camera in self.params.camera_names:
            self.pub_depth[camera] = self.create_publisher(Image, f"~/output/{camera}/depth", OUTPUT_QOS)
            self.pub_depth_info[camera] = self.create_publisher(CameraInfo, f"~/output/{camera}/camera_info",
                                                                OUTPUT_QOS)
            self.pub_rgb[camera] = self.create_publisher(Image, f"~/output/{camera}/rgb", OUTPUT_QOS)
        self.pub_processing = self.create_publisher(Float64, "~/debug/processing_time_ms", OUTPUT_QOS)
        self.pub_latency = self.create_publisher(Float64, "~/debug/pipeline_latency_ms", OUTPUT_QOS)
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS)
        self._outputs = [self.pub_grid, self.pub_voxels, self.pub_semantic, self.pub_query,
                         *self.pub_depth.values(), *self.pub_depth_info.values(), *self.pub_rgb.values()]

    def _subscribe_inputs(self) -> None:
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        qos = input_qos(self.params.input_qos, self.params.input_queue_depth)
        if not self.params.compressed and qos.reliability == ReliabilityPolicy.BEST_EFFORT:
            # measured: 36-42 % of 1600x900 rgb8 images (4.3 MB) arrive over best effort, even at 1 set/s
            self.get_logger().warning("raw images subscribed best effort (input_qos: sensor_data): DDS drops most "
                                   "multi-megabyte images that way; set input_qos:=reliable if the cameras publish "
                                   "reliable, or publish compressed images")
            self.health.model["input_qos_warning"] = "raw images over best effort lose most messages"
        for camera in self.params.camera_names:
            topics = input_topics(camera)
            if self.params.compressed:
                self.create_subscription(CompressedImage, topics["compressed"],
                                         lambda msg, c=camera: self._on_image(c, msg), qos)
            else:
                self.create_subscription(Image, topics["image"], lambda msg, c=camera: self._on_image(c, msg), qos)
            self.create_subscription(CameraInfo, topics["camera_info"],
                                     lambda msg, c=camera: self._on_camera_info(c, msg), qos)

    # ------------------------------------------------------------------------------------- executor callbacks
    def _warn(self, key, message: str) -> None:
        if self._warnings.allow(key):
            suppressed = self._warnings.suppressed.pop(key, 0)
            self.get_logger().warning(message + (f" ({suppressed} similar since the last warning)" if suppressed else ""))

    def _reject(self, camera: str, kind: str, message: str) -> None:
        self.counters[f"rejected_{kind}"] += 1
        self.health.problem(camera, kind, message)
        self._warn((camera, kind), f"{camera}: dropped input: {message}")

    def _on_camera_info(self, camera: str, msg) -> None:
        try:
            self._camera_info[camera] = CameraInfoEntry(cv.camera_info_intrinsics(msg), (msg.width, msg.height))
        except cv.InputError as error:
            self._camera_info[camera] = error
            self._reject(camera, error.kind, str(error))

    def _intrinsics(self, camera: str, size: tuple[int, int]) -> np.ndarray:
        info = self._camera_info.get(camera)
        if isinstance(info, cv.InputError):
            raise cv.InputError(info.kind, f"last camera_info unusable: {info}")
        if info is None:
            return self._extrinsics.intrinsics(camera, size)
        if info.size != size:
            raise cv.InputError("size", f"image {size[0]}x{size[1]} disagrees with camera_info "
                                        f"{info.size[0]}x{info.size[1]}")
        return info.intrinsics

    def _on_image(self, camera: str, msg) -> None:
        began = time.perf_counter()
        self.health.received(camera)
        stamp = cv.stamp_to_nanoseconds(msg.header.stamp)
        verdict = self._stamps.check(camera, stamp)
        if verdict == "duplicate":
            self._reject(camera, "duplicate_stamp", f"stamp {stamp * 1e-9:.6f} repeats the previous image's")
            return
        if verdict == "backwards":
            self.health.reset_stamps()
            with self._sync_lock:
                self._sync.reset()
            self.health.resets += 1
            self.health.last_reset_reason = f"{camera} stamp went back to {stamp * 1e-9:.3f} s"
            self.health.problem(camera, "stamp_backwards", self.health.last_reset_reason)
            self._warn((camera, "stamp_backwards"), f"{camera}: stamp jumped backwards (looped bag?): "
                                                    "synchroniser reset")
        self.health.stamped(camera, stamp)
        frame_id = msg.header.frame_id
        if frame_id and frame_id != camera and not self._extrinsics.uses_tf and camera not in self._frame_id_noted:
            # the rig entry is keyed by camera name: say which calibration this frame's pixels are taken to have
            self._frame_id_noted.add(camera)
            self.get_logger().warning(f"{camera}: image frame_id {frame_id!r} is not the rig's camera {camera!r}: "
                                   f"its extrinsics come from the rig entry {camera!r}; its depth keeps frame_id "
                                   f"{frame_id!r}")
            self.health.model[f"frame_id_{camera}"] = f"{frame_id} (rig entry {camera})"
        try:
            size = cv.compressed_image_size(msg) if self.params.compressed else cv.raw_image_size(msg)
            frame = CameraFrame(camera, msg.header, msg, size, self._intrinsics(camera, size))
        except cv.InputError as error:
            self._reject(camera, error.kind, str(error))
            return
        with self._sync_lock:
            self._sync.add(camera, frame)
        self.stage_ms["sync_callback"].append((time.perf_counter() - began) * 1e3)

    def _on_set(self, frames: dict) -> None:
        """Synchroniser callback (holds its lock): hand over, never infer here."""
        self.counters["sets"] += 1
        self._slot.put(frames)

    def _check_dropout(self) -> None:
        silent = set(self.health.silent_cameras(self.params.camera_timeout, self.params.sync_slop))
        active = [c for c in self.params.camera_names if c not in silent] or list(self.params.camera_names)
        if active != self._active:
            dropped = [c for c in self.params.camera_names if c not in active]
            if dropped:
                self.get_logger().warning(f"no images from {', '.join(dropped)} while the others' moved on by more "
                                       f"than {self.params.camera_timeout} s: inferring from the other cameras")
            else:
                self.get_logger().info("all cameras deliver images again")
            self._active = active
            with self._sync_lock:
                self._sync.set_active(active)

    def _on_query(self, msg) -> None:
        from rclpy.parameter import Parameter

        self.set_parameters([Parameter("query_text", Parameter.Type.STRING, msg.data)])

    def _on_set_parameters(self, parameters):
        from rcl_interfaces.msg import SetParametersResult

        for parameter in parameters:
            if parameter.name == "query_text":
                if self._query_text != parameter.value:
                    self._query_unavailable_warned = False
                    self.get_logger().info(f"feature query set to {parameter.value!r}")
                self._query_text = parameter.value
            elif parameter.name == "publish_rgb":
                self._publish_rgb = bool(parameter.value)
            elif parameter.name == "occupancy_threshold":
                self._threshold = float(parameter.value)
            elif parameter.name == "voxel_cloud_max_points":
                self._voxel_cap = int(parameter.value)
        return SetParametersResult(successful=True)

    def _publish_diagnostics(self) -> None:
        self.health.sets_dropped = self._slot.dropped
        self.health.model["synchronizer"] = self.synchronizer_kind
        self.health.model["extrinsics"] = ",".join(f"{c}:{s}" for c, s in sorted(self._extrinsics.sources.items()))
        array = to_diagnostic_array(self.health.statuses(), self.get_clock().now().to_msg(), NODE_NAME)
        self.pub_diagnostics.publish(array)

    # -------------------------------------------------------------------------------------------- worker thread
    def _work(self) -> None:
        while self._running:
            frames = self._slot.get(timeout=0.2)
            if frames is None:
                continue
            if not any(publisher.get_subscription_count() for publisher in self._outputs):
                self.health.skipped_no_subscribers += 1
                continue
            try:
                self.process(frames)
            except cv.InputError as error:
                self.health.sets_rejected += 1
                camera = getattr(error, "camera", None)
                self.health.problem(camera, error.kind, str(error))
                self._warn((camera, error.kind), f"dropped a camera set: {error}")
            except Exception as error:  # a model or publishing failure must not end the worker
                self.health.errors[type(error).__name__] += 1
                self.health.last_error = f"{type(error).__name__}: {error}"
                self._warn(("inference", type(error).__name__), f"inference failed: {type(error).__name__}: "
                                                                f"{error}")

    def _model_image(self, frame: CameraFrame) -> np.ndarray:
        """Decode (JPEG at a reduced scale where possible) and resize one image to the model input."""
        size = tuple(self.backend.input_size)
        try:
            if self.params.compressed:
                image = cv.decode_compressed(frame.msg, target_size=size)
            else:
                image = cv.raw_image_to_rgb(frame.msg)
            return cv.resize_rgb(image, size)
        except cv.InputError as error:
            error.camera = frame.camera
            raise

    def prepare_inputs(self, frames: dict):
        """Model-order images (at the model input size), intrinsics, extrinsics and valid mask of a set.
        The six decodes run on a small thread pool: OpenCV releases the GIL while decoding and resizing."""
        width, height = self.backend.input_size
        present = [camera for camera in self.backend.camera_names if camera in frames]
        decoded = dict(zip(present, self._decoders.map(self._model_image, [frames[c] for c in present])))
        images, intrinsics, cam_to_ego, valid = [], [], [], []
        for camera in self.backend.camera_names:
            frame = frames.get(camera)
            if frame is None:
                images.append(np.zeros((height, width, 3), np.uint8))
                k = self._last_intrinsics.get(camera)
                intrinsics.append(k if k is not None else self._rig_intrinsics(camera, (width, height)))
                cam_to_ego.append(self._rig_cam_to_base(camera))
                valid.append(False)
                continue
            try:
                pose = self._extrinsics.cam_to_base(camera, frame.header.frame_id)
            except cv.InputError as error:
                error.camera = camera
                raise
            k = cv.scale_intrinsics(frame.intrinsics, frame.size, (width, height))
            images.append(decoded[camera])
            intrinsics.append(k)
            self._last_intrinsics[camera] = k
            cam_to_ego.append(pose)
            valid.append(True)
        return images, intrinsics, cam_to_ego, valid

    def _rig_intrinsics(self, camera: str, size) -> np.ndarray:
        try:
            return self._rig.camera(camera).resized(*size).intrinsics
        except KeyError:  # a model camera absent from the rig and never seen: any sane K, it is masked out
            return np.array([[size[0], 0, size[0] / 2], [0, size[0], size[1] / 2], [0, 0, 1]], dtype=np.float64)

    def _rig_cam_to_base(self, camera: str) -> np.ndarray:
        try:
            return self._extrinsics.cam_to_base(camera, camera)
        except cv.InputError:
            return np.eye(4)

    def process(self, frames: dict) -> None:
        """Decode, infer and publish one synchronised set (worker thread)."""
        from std_msgs.msg import Float64, Header

        began = time.perf_counter()
        stamp_ns = max(cv.stamp_to_nanoseconds(frame.header.stamp) for frame in frames.values())
        header = Header(stamp=cv.nanoseconds_to_time(stamp_ns), frame_id=self.params.base_frame)
        images, intrinsics, cam_to_ego, valid = self.prepare_inputs(frames)
        converted = time.perf_counter()
        result = self.backend.infer(images, intrinsics, cam_to_ego, valid, occupancy_threshold=self._threshold)
        inferred = time.perf_counter()
        self.publish_result(header, frames, result)
        published = time.perf_counter()
        self.health.inferences += 1
        processing = (published - began) * 1e3
        self.stage_ms["conversion"].append((converted - began) * 1e3)
        self.stage_ms["inference"].append((inferred - converted) * 1e3)
        self.stage_ms["publishing"].append((published - inferred) * 1e3)
        self.health.processing_ms.append(processing)
        latency = (self.get_clock().now().nanoseconds - stamp_ns) * 1e-6
        self.health.latency_ms.append(latency)
        self.pub_processing.publish(Float64(data=processing))
        self.pub_latency.publish(Float64(data=latency))

    def publish_result(self, header, frames: dict, result) -> None:
        # one threshold (the node's parameter, applied by the backend): occupied voxels, their labels and the
        # voxels a query scores all agree
        probability = np.asarray(result.occupancy_probability, dtype=np.float32)
        occupied = np.asarray(result.occupied, dtype=bool)
        labels = np.asarray(result.semantics, dtype=np.uint8)
        visible = np.asarray(result.camera_visible, dtype=np.uint8)
        if self.pub_grid.get_subscription_count():
            bev = cv.bird_eye_view(occupied, labels, visible, GROUND_LABELS)
            self.pub_grid.publish(cv.occupancy_grid(header, bev, self._grid))
        if self.pub_voxels.get_subscription_count():
            self.pub_voxels.publish(cv.voxel_cloud(header, occupied, probability, labels, self._grid,
                                                   self._voxel_cap))
        if self.pub_semantic.get_subscription_count():
            self.pub_semantic.publish(cv.semantic_occupancy(header, labels, visible, self._class_names, self._grid))
        names = list(self.backend.camera_names)
        for camera, frame in frames.items():
            index = names.index(camera)
            camera_header = type(header)(stamp=header.stamp, frame_id=frame.header.frame_id or camera)
            depth = result.depth[index]
            if self.pub_depth[camera].get_subscription_count():
                self.pub_depth[camera].publish(cv.depth_image(camera_header, depth))
            if self.pub_depth_info[camera].get_subscription_count():
                self.pub_depth_info[camera].publish(cv.camera_info(camera_header, result.depth_intrinsics[index],
                                                                   depth.shape[1], depth.shape[0]))
            if self._publish_rgb and self.pub_rgb[camera].get_subscription_count():
                self.pub_rgb[camera].publish(cv.rgb_image(camera_header, result.rgb[index]))
        self._publish_query(header)

    def _publish_query(self, header) -> None:
        text = self._query_text
        if not text:
            self.health.query_state = "no query"
            return
        if not self.pub_query.get_subscription_count():
            return
        try:
            points, relevance = self.backend.query(text)
        except RuntimeError as error:
            self.health.query_state = f"unavailable: {error}"
            if not self._query_unavailable_warned:
                self._query_unavailable_warned = True
                self.get_logger().warning(f"feature query {text!r} not published: {error}")
            return
        self.health.query_state = f"{text!r}: {len(points)} points"
        self.pub_query.publish(cv.query_cloud(header, points, relevance))

    # ---------------------------------------------------------------------------------------------- shutdown
    def close(self) -> None:
        if getattr(self, "_worker", None) is not None:
            self._running = False
            self._slot.close()
            self._worker.join(timeout=10.0)
            self._decoders.shutdown(wait=True)
        self.destroy_node()


def parameter_problem(error: Exception) -> str:
    """One line for rclpy's parameter exceptions (whose text spans lines and names Python types)."""
    text = " ".join(str(error).split())
    if isinstance(error, InvalidParameterTypeException):
        return f"{text} (write a float with a decimal point, e.g. 2.0, where a float is expected)"
    return text


def main(argv: list[str] | None = None) -> int:
    """Console script ``distillnerf_node``; returns the exit code (0 after ``warmup_only``)."""
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    rclpy.init(args=argv if argv is not None else sys.argv)
    node = None
    try:
        node = DistillNerfNode()
        if node.params.warmup_only:
            return 0
        executor = SingleThreadedExecutor()  # inference runs on the node's own worker thread
        executor.add_node(node)
        executor.spin()
        return 0
    except (StartupError, ValueError, FileNotFoundError) as error:
        rclpy.logging.get_logger(NODE_NAME).error(f"cannot start: {error}")
        return 2
    except ParameterException as error:  # a --ros-args value of the wrong type or out of range
        rclpy.logging.get_logger(NODE_NAME).error(f"cannot start: parameter {parameter_problem(error)}")
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        if node is not None:
            node.close()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
