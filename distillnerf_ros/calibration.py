"""Camera extrinsics (camera -> base frame) from TF or a rig file, and fallback intrinsics from the rig.

TF is the ROS way (a bag's /tf, a robot_state_publisher); the rig file (``distillnerf.rig``) is the fallback
when tf2_ros is not installed, ``use_tf`` is false, or a camera's transform never arrives. Extrinsics are rigid,
so each camera's transform is looked up once and cached.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from distillnerf.rig import Rig, quaternion_to_matrix

from distillnerf_ros.conversions import InputError


def transform_to_matrix(transform) -> np.ndarray:
    """4x4 of a geometry_msgs/Transform."""
    t, q = transform.translation, transform.rotation
    matrix = np.eye(4)
    matrix[:3, :3] = quaternion_to_matrix([q.w, q.x, q.y, q.z])
    matrix[:3, 3] = [t.x, t.y, t.z]
    return matrix


def tf_lookup_errors() -> tuple[type[Exception], ...]:
    """What a TF lookup raises for "not (yet) available": tf2's TransformException family (lookup, connectivity,
    extrapolation, timeout) when tf2_ros is installed; LookupError for stand-in buffers."""
    try:
        import tf2_ros
    except ImportError:
        return (LookupError,)
    return (tf2_ros.TransformException, LookupError)


def tf2_available() -> bool:
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        return False
    return True


class Extrinsics:
    """camera -> base frame transforms: TF first (when a listener is given), the rig file otherwise."""

    def __init__(self, rig: Rig, base_frame: str, tf_buffer=None, warn: Callable[[str], None] = print,
                 report: Callable[[str, str | None], None] = lambda camera, problem: None):
        """``report(camera, problem)`` hears when a camera has no extrinsics (``problem``) and when it has them
        again (None): the node shows it in /diagnostics."""
        self.rig = rig
        self._report = report
        self.base_frame = base_frame
        self._tf_buffer = tf_buffer
        self._warn = warn
        self._cache: dict[str, np.ndarray] = {}
        self._warned: set[str] = set()
        self.sources: dict[str, str] = {}  # camera -> "tf" or "rig", for diagnostics

    @classmethod
    def create(cls, node, rig: Rig, base_frame: str, use_tf: bool, report=None) -> "Extrinsics":
        buffer = listener = None
        if use_tf and tf2_available():
            import tf2_ros

            buffer = tf2_ros.Buffer()
            listener = tf2_ros.TransformListener(buffer, node)
        elif use_tf:
            node.get_logger().warning("use_tf is true but tf2_ros is not installed: camera extrinsics come from the "
                                   f"rig file ({rig.source or rig.name})")
        if rig.frame_id != base_frame:
            node.get_logger().warning(f"rig {rig.name!r} is relative to {rig.frame_id!r}, not base_frame "
                                   f"{base_frame!r}: its extrinsics are used as given")
        extrinsics = cls(rig, base_frame, buffer, node.get_logger().warning,
                         **({"report": report} if report is not None else {}))
        extrinsics._listener = listener  # keeps the subscription alive
        return extrinsics

    @property
    def uses_tf(self) -> bool:
        """Whether TF is consulted (else the rig file is the only source of extrinsics)."""
        return self._tf_buffer is not None

    def cam_to_base(self, camera: str, frame_id: str) -> np.ndarray:
        cached = self._cache.get(camera)
        if cached is not None:
            return cached
        if self._tf_buffer is not None:
            matrix = self._lookup(camera, frame_id)
            if matrix is not None:
                self._cache[camera] = matrix
                if self.sources.get(camera) == "missing":
                    self._report(camera, None)
                self.sources[camera] = "tf"
                return matrix
        try:
            matrix = self.rig.camera(camera).cam_to_ego
        except KeyError as error:
            problem = f"no transform {self.base_frame} <- {frame_id} and no camera {camera} in the rig file"
            if self.sources.get(camera) != "missing":
                self.sources[camera] = "missing"
                self._report(camera, problem)
            raise InputError("extrinsics", f"{problem}: {error}") from error
        if self.sources.get(camera) == "missing":
            self._report(camera, None)
        self.sources[camera] = "rig"
        if self._tf_buffer is None:
            self._cache[camera] = matrix  # TF may still arrive otherwise: look again next time
        return matrix

    def _lookup(self, camera: str, frame_id: str) -> np.ndarray | None:
        from rclpy.time import Time

        try:
            stamped = self._tf_buffer.lookup_transform(self.base_frame, frame_id or camera, Time())
        except tf_lookup_errors() as error:
            if camera not in self._warned:
                self._warned.add(camera)
                self._warn(f"no TF {self.base_frame} <- {frame_id or camera} yet ({type(error).__name__}); "
                           f"using the rig file's extrinsics for {camera} until it arrives")
            return None
        return transform_to_matrix(stamped.transform)

    def placeholder_intrinsics(self, camera: str, size: tuple[int, int]) -> np.ndarray:
        """K for a model camera that sent nothing (masked out of the model's input): the rig's, else any sane K."""
        try:
            return self.rig.camera(camera).resized(*size).intrinsics
        except KeyError:
            return np.array([[size[0], 0, size[0] / 2], [0, size[0], size[1] / 2], [0, 0, 1]], dtype=np.float64)

    def intrinsics(self, camera: str, size: tuple[int, int]) -> np.ndarray:
        """The rig's K for ``camera`` at image ``size`` (used until the camera's CameraInfo arrives)."""
        try:
            return self.rig.camera(camera).resized(*size).intrinsics
        except KeyError as error:
            raise InputError("intrinsics", f"no camera_info for {camera} yet and no such camera in the rig "
                                           "file") from error
