"""The ``distillnerf`` ROS 2 node: six camera streams in; occupancy, depth and feature queries out.

Flow: subscriptions (executor thread) check each image cheaply (``inputs``) and feed the synchroniser; a complete
set goes to the inference worker (``worker``), which prepares the model inputs (``model_inputs``), runs the
backend (``backend``) and publishes (``outputs``). The executor never waits for the model, so parameters, TF, the
query topic and /diagnostics stay responsive, and a slow model drops old sets instead of queueing them. Bad input
is warned about (throttled), counted in /diagnostics and dropped. This module is the wiring.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import defaultdict, deque

import rclpy
from rclpy.exceptions import InvalidParameterTypeException, ParameterException
from rclpy.node import Node

from distillnerf_ros import conversions as cv
from distillnerf_ros import output_messages as out
from distillnerf_ros.backend import InferenceBackend, StartupError, load_backend, resolve_device
from distillnerf_ros.calibration import Extrinsics
from distillnerf_ros.diagnostics import Health, ThrottledWarnings, to_diagnostic_array
from distillnerf_ros.inputs import InputGate
from distillnerf_ros.interface import LATCHED_QOS, NODE_NAME, OUTPUT_QOS, QUERY_TOPIC, READY_PREFIX
from distillnerf_ros.model_inputs import ModelInputs
from distillnerf_ros.outputs import OutputPublishers
from distillnerf_ros.parameters import SPEC_BY_NAME, declare_parameters, typed_value
from distillnerf_ros.subscriptions import CameraSubscriptions
from distillnerf_ros.synchronizer import StampMonitor, make_synchronizer
from distillnerf_ros.worker import InferenceWorker


class DistillNerfNode(Node):
    """See the module docstring. ``backend`` replaces model loading (tests, the bench); None loads per params.
    ``start_worker=False`` leaves complete sets in ``worker`` for the caller to ``take`` and ``process``."""

    def __init__(self, backend: InferenceBackend | None = None, start_worker: bool = True, **node_kwargs):
        super().__init__(NODE_NAME, **node_kwargs)
        started = time.monotonic()
        self.params = p = declare_parameters(self)
        self._warnings = ThrottledWarnings(p.warning_period)
        self.stage_ms: dict[str, deque] = defaultdict(lambda: deque(maxlen=1000))
        self.counters: dict[str, int] = defaultdict(int)
        self.backend = backend if backend is not None else self._load_backend()
        unknown = [c for c in p.camera_names if c not in self.backend.camera_names]
        if unknown:
            raise StartupError(f"camera_names {unknown} are not cameras of the model "
                               f"({list(self.backend.camera_names)})")
        self.backend.warmup()
        self.health = Health(NODE_NAME, p.camera_names, recent=max(p.warning_period, 1.0))
        self.health.model.update(device=str(self.backend.device), ready=True,
                                 input_size="x".join(map(str, self.backend.input_size)),
                                 render_size="x".join(map(str, self.backend.render_size)))
        self.worker = None
        self.synchronizer_kind = "none"
        if not p.warmup_only:
            self._wire(start_worker)
        self._log_ready(time.monotonic() - started)

    def _load_backend(self) -> InferenceBackend:
        device, warning = resolve_device(self.params.device)
        if warning:
            self.get_logger().warning(warning)
        return load_backend(self.params, device)

    def _wire(self, start_worker: bool) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from distillnerf.rig import load_rig
        from std_msgs.msg import String

        p = self.params
        grid = getattr(self.backend, "grid", None) or out.OCC3D_GRID
        self._rig = load_rig(p.calibration_file)
        self._extrinsics = Extrinsics.create(self, self._rig, p.base_frame, p.use_tf, report=self.health.calibration)
        missing = [c for c in p.camera_names if c not in self._rig.camera_names]
        if missing and not self._extrinsics.uses_tf:  # the rig file is the only source: every camera must be in it
            raise StartupError(f"calibration file {self._rig.source or p.calibration_file} has no camera "
                               f"{', '.join(missing)} (it has {', '.join(self._rig.camera_names)}); "
                               "give one that has every camera in camera_names, or use_tf with TF")
        for camera in missing:  # TF may still bring them: an ERROR in /diagnostics until it does
            self.health.calibration(camera, f"not in the rig file and no TF {p.base_frame} <- {camera} yet")
        self._gate = InputGate(p.compressed, self._extrinsics.intrinsics, names_frames=not self._extrinsics.uses_tf)
        self._model_inputs = ModelInputs(self.backend.camera_names, self.backend.input_size, p.compressed,
                                         self._extrinsics, threads=len(p.camera_names))
        self.outputs = OutputPublishers(self, p.camera_names, self.backend.camera_names, grid, self.backend.query,
                                        self.stage_ms, self.health, self.get_logger())
        self._pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS)
        self._stamps = StampMonitor()
        self.active_cameras = list(p.camera_names)
        self.worker = InferenceWorker(self.process, self.outputs.anyone_listening, self.health, self._warn)
        self._sync = make_synchronizer(self.active_cameras, p.sync_slop, p.sync_queue_size, self._on_set)
        self.synchronizer_kind = type(self._sync).__name__
        self._sync_lock = threading.Lock()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_subscription(String, QUERY_TOPIC, self.on_query, LATCHED_QOS)
        self.create_timer(p.diagnostics_period, self._publish_diagnostics)
        self.create_timer(min(p.camera_timeout / 2.0, 0.25), self.check_dropout)
        if start_worker:
            self.worker.start()
        self.inputs = CameraSubscriptions(self, p, self.on_image, self.on_camera_info, self.health)

    def _log_ready(self, seconds: float) -> None:
        b, p = self.backend, self.params
        self.get_logger().info(
            f"{READY_PREFIX} device={b.device} cameras={len(p.camera_names)} input={b.input_size[0]}x"
            f"{b.input_size[1]} render={b.render_size[0]}x{b.render_size[1]} "
            f"{'compressed' if p.compressed else 'raw'} images, sync={self.synchronizer_kind}, "
            f"loaded and warmed up in {seconds:.1f} s")

    # ------------------------------------------------------------------------------------- executor callbacks
    def _warn(self, key, message: str) -> None:
        if self._warnings.allow(key):
            suppressed = self._warnings.suppressed.pop(key, 0)
            self.get_logger().warning(message + (f" ({suppressed} similar since the last warning)" if suppressed else ""))

    def _reject(self, camera: str, kind: str, message: str) -> None:
        self.counters[f"rejected_{kind}"] += 1
        self.health.problem(camera, kind, message)
        self._warn((camera, kind), f"{camera}: dropped input: {message}")

    def on_camera_info(self, camera: str, msg) -> None:
        try:
            released = self._gate.on_camera_info(camera, msg)
        except cv.InputError as error:
            self._reject(camera, error.kind, str(error))
            return
        if released is not None:  # the first image at a new resolution, held until this CameraInfo
            self._add_to_sync(released)

    def on_image(self, camera: str, msg) -> None:
        began = time.perf_counter()
        self.health.received(camera)
        stamp = cv.stamp_to_nanoseconds(msg.header.stamp)
        verdict = self._stamps.check(camera, stamp)
        if verdict == "duplicate":
            self._reject(camera, "duplicate_stamp", f"stamp {stamp * 1e-9:.6f} repeats the previous image's")
            return
        if verdict == "backwards":
            with self._sync_lock:
                self._sync.reset()
            self.health.stream_reset(camera, f"{camera} stamp went back to {stamp * 1e-9:.3f} s")
            self._warn((camera, "stamp_backwards"), f"{camera}: stamp jumped backwards (looped bag?): "
                                                    "synchroniser reset")
        self.health.stamped(camera, stamp)
        note = self._gate.frame_id_note(camera, msg.header.frame_id)
        if note is not None:
            self.get_logger().warning(note)
            self.health.model[f"frame_id_{camera}"] = f"{msg.header.frame_id} (rig entry {camera})"
        try:
            frame = self._gate.admit(camera, msg)
        except cv.InputError as error:
            self._reject(camera, error.kind, str(error))
            return
        if frame is not None:
            self._add_to_sync(frame)
        self.stage_ms["sync_callback"].append((time.perf_counter() - began) * 1e3)

    def _add_to_sync(self, frame) -> None:
        with self._sync_lock:
            self._sync.add(frame.camera, frame)

    def _on_set(self, frames: dict) -> None:
        """Synchroniser callback (holds its lock): hand over, never infer here."""
        self.counters["sets"] += 1
        self.worker.put(frames)

    def check_dropout(self) -> None:
        p = self.params
        silent = set(self.health.silent_cameras(p.camera_timeout, p.sync_slop))
        active = [c for c in p.camera_names if c not in silent] or list(p.camera_names)
        if active == self.active_cameras:
            return
        dropped = [c for c in p.camera_names if c not in active]
        if dropped:
            lags = ", ".join(f"{c} {lag:.2f} s" for c, lag in self.health.stamp_lags(dropped).items())
            self.get_logger().warning(f"no images from {', '.join(dropped)} while the others' moved on by more "
                                      f"than {p.camera_timeout} s ({lags} behind): inferring from the other cameras")
        else:
            self.get_logger().info("all cameras deliver images again")
        self.active_cameras = active
        with self._sync_lock:
            self._sync.set_active(active)

    def on_query(self, msg) -> None:
        from rclpy.parameter import Parameter

        self.set_parameters([Parameter("query_text", Parameter.Type.STRING, msg.data)])

    def _on_set_parameters(self, parameters):
        from rcl_interfaces.msg import SetParametersResult

        for parameter in parameters:  # ROS checked type and range against the declared descriptors
            spec = SPEC_BY_NAME.get(parameter.name)
            if spec is None or not spec.dynamic:
                continue
            value = typed_value(spec, parameter.value)
            if parameter.name == "query_text" and value != self.params.query_text:
                self.outputs.query_changed()
                self.get_logger().info(f"feature query set to {value!r}")
            setattr(self.params, parameter.name, value)  # the worker reads the values it runs with here
        return SetParametersResult(successful=True)

    def _publish_diagnostics(self) -> None:
        self.health.sets_dropped = self.worker.slot.dropped
        self.health.model["synchronizer"] = self.synchronizer_kind
        self.health.model["extrinsics"] = ",".join(f"{c}:{s}" for c, s in sorted(self._extrinsics.sources.items()))
        self.health.model["input_qos"] = self.inputs.qos_summary()
        array = to_diagnostic_array(self.health.statuses(), self.get_clock().now().to_msg(), NODE_NAME)
        self._pub_diagnostics.publish(array)

    # -------------------------------------------------------------------------------------------- worker thread
    def prepare_inputs(self, frames: dict):
        """Model-order images (at the model input size), intrinsics, extrinsics and valid mask of a set."""
        return self._model_inputs.prepare(frames)

    def process(self, frames: dict) -> None:
        """Decode, infer and publish one synchronised set."""
        from std_msgs.msg import Float64, Header

        began = time.perf_counter()
        stamp_ns = max(cv.stamp_to_nanoseconds(frame.header.stamp) for frame in frames.values())
        header = Header(stamp=cv.nanoseconds_to_time(stamp_ns), frame_id=self.params.base_frame)
        images, intrinsics, cam_to_ego, valid = self.prepare_inputs(frames)
        converted = time.perf_counter()
        p = self.params
        threshold = p.occupancy_threshold if p.occupancy_threshold >= 0 else None  # None: the checkpoint's own
        result = self.backend.infer(images, intrinsics, cam_to_ego, valid, occupancy_threshold=threshold)
        inferred = time.perf_counter()
        self.outputs.publish(header, frames, result, voxel_cap=p.voxel_cloud_max_points, publish_rgb=p.publish_rgb,
                             query_text=p.query_text)
        published = time.perf_counter()
        processing = (published - began) * 1e3
        self.stage_ms["conversion"].append((converted - began) * 1e3)
        self.stage_ms["inference"].append((inferred - converted) * 1e3)
        self.stage_ms["publishing"].append((published - inferred) * 1e3)
        latency = (self.get_clock().now().nanoseconds - stamp_ns) * 1e-6
        self.health.inference(processing, latency)
        self.outputs.processing.publish(Float64(data=processing))
        self.outputs.latency.publish(Float64(data=latency))

    # ---------------------------------------------------------------------------------------------- shutdown
    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self._model_inputs.close()
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
