"""Lens distortion removed before the model sees an image (numpy + OpenCV; no ROS import).

The model is a pinhole camera model, so an image from a distorted lens must be resampled into the *rectified*
camera first. By ROS convention (sensor_msgs/CameraInfo) that camera's intrinsics are P[:3,:3] when P is set,
else K, with R rotating the rectified frame (identity for a monocular camera). The rectified image keeps the
input's size, and everything downstream (depth, its CameraInfo) refers to the rectified camera, with d = 0.

Maps are built once per image size and reused: a ``Rectifier`` serves the full CameraInfo size and any reduced
size (JPEGs decoded at 1/2, 1/4, 1/8, resized raw images), and ``RectifierCache`` returns the same Rectifier
for every CameraInfo with the same content. Both are safe to use from several decode threads at once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import cv2
import numpy as np

from distillnerf_ros.conversions import InputError

#: Supported CameraInfo distortion models and their number of coefficients (ROS's order, which is OpenCV's).
DISTORTION_MODELS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}

#: Image sizes whose maps one Rectifier keeps (full size plus the reduced sizes a node uses, with room to spare).
MAX_SIZES_PER_RECTIFIER = 8

#: CameraInfo contents whose Rectifiers one RectifierCache keeps (one per camera, plus calibration changes).
MAX_CAMERA_INFOS = 32


def _matrix(values, shape: tuple[int, int], name: str) -> np.ndarray:
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.size != shape[0] * shape[1]:
        raise InputError("intrinsics", f"camera_info {name} has {matrix.size} values, expected {shape[0] * shape[1]}")
    matrix = matrix.reshape(shape)
    if not np.all(np.isfinite(matrix)):
        raise InputError("intrinsics", f"camera_info {name} contains NaN or infinity")
    return matrix


def _check_focal(matrix: np.ndarray, name: str) -> None:
    if matrix[0, 0] <= 0 or matrix[1, 1] <= 0:
        raise InputError("intrinsics", f"camera_info {name} has non-positive focal lengths "
                                       f"({matrix[0, 0]}, {matrix[1, 1]})")


def _coefficients(distortion_model: str, d: Sequence[float]) -> tuple[str, np.ndarray]:
    """(model, coefficients) checked; model '' means no distortion. Raises InputError('distortion', ...)."""
    model = (distortion_model or "").strip().lower()
    coefficients = np.asarray(list(d) if d is not None else [], dtype=np.float64).reshape(-1)
    if not model:
        return "", np.zeros(0)
    if model not in DISTORTION_MODELS:
        raise InputError("distortion", f"unsupported distortion model {distortion_model!r} (supported: "
                                       f"{', '.join(DISTORTION_MODELS)})")
    if coefficients.size == 0:
        return model, coefficients
    expected = DISTORTION_MODELS[model]
    if coefficients.size != expected:
        raise InputError("distortion", f"distortion model {model!r} needs {expected} coefficients in d, got "
                                       f"{coefficients.size}")
    if not np.all(np.isfinite(coefficients)):
        raise InputError("distortion", "camera_info d contains NaN or infinity")
    return model, coefficients


def _pixel_scaled(matrix: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """A camera matrix for the image area-resampled to ``to_size``, in OpenCV's convention (pixel centres at
    integers, as CameraInfo): this is what makes rectify-then-reduce equal reduce-then-rectify."""
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    shift_then_scale = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    return shift_then_scale @ matrix


class Rectifier:
    """Remaps images of one camera into its rectified pinhole camera; build with ``create``.

    ``intrinsics`` is the rectified camera at the CameraInfo size; ``is_identity`` is True when no remap is
    needed (then ``rectify`` returns its input). ``maps_built`` counts map computations (one per image size).
    """

    def __init__(self, model: str, coefficients: np.ndarray, k: np.ndarray, new_k: np.ndarray, r: np.ndarray,
                 size: tuple[int, int]):
        self.model = model
        self.coefficients = coefficients
        self.k = k
        self.intrinsics = new_k
        self.r = r
        self.size = size
        self.is_identity = (not np.any(coefficients) and np.allclose(new_k, k) and np.allclose(r, np.eye(3)))
        self.maps_built = 0
        self._maps: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    @classmethod
    def create(cls, distortion_model: str, d: Sequence[float], k, p=None, r=None, width: int = 0,
               height: int = 0) -> "Rectifier":
        """Check the calibration (InputError 'distortion' or 'intrinsics') and return its Rectifier.

        ``p`` (3x4) all zero or None means "rectified camera = K"; ``r`` (3x3) all zero or None means identity.
        """
        if width <= 0 or height <= 0:
            raise InputError("intrinsics", f"camera_info has no image size ({width}x{height})")
        model, coefficients = _coefficients(distortion_model, d)
        k = _matrix(k, (3, 3), "K")
        _check_focal(k, "K")
        new_k = k.copy()
        if p is not None and np.any(np.asarray(p, dtype=np.float64)):
            new_k = _matrix(p, (3, 4), "P")[:, :3].copy()  # the 4th column is a stereo baseline: not ours
            _check_focal(new_k, "P")
        rotation = np.eye(3)
        if r is not None and np.any(np.asarray(r, dtype=np.float64)):
            rotation = _matrix(r, (3, 3), "R")
        return cls(model, coefficients, k, new_k, rotation, (int(width), int(height)))

    def rectify(self, image: np.ndarray) -> np.ndarray:
        """The image (HxWxC uint8, the CameraInfo size or a reduced one) in the rectified camera, same size."""
        if self.is_identity:
            return image
        map_xy, map_fraction = self._maps_for((image.shape[1], image.shape[0]))
        return cv2.remap(image, map_xy, map_fraction, interpolation=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def _maps_for(self, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        maps = self._maps.get(size)  # a dict read is atomic: the common case takes no lock
        if maps is not None:
            return maps
        with self._lock:
            maps = self._maps.get(size)
            if maps is None:
                maps = self._build_maps(size)
                if len(self._maps) >= MAX_SIZES_PER_RECTIFIER:
                    self._maps.pop(next(iter(self._maps)))
                self._maps[size] = maps
                self.maps_built += 1
            return maps

    def _build_maps(self, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        k = _pixel_scaled(self.k, self.size, size)
        new_k = _pixel_scaled(self.intrinsics, self.size, size)
        if self.model == "equidistant":
            coefficients = self.coefficients if self.coefficients.size else np.zeros(4)
            map_x, map_y = cv2.fisheye.initUndistortRectifyMap(k, coefficients.reshape(4, 1), self.r, new_k, size,
                                                               cv2.CV_32FC1)
        else:
            coefficients = self.coefficients if self.coefficients.size else np.zeros(5)
            map_x, map_y = cv2.initUndistortRectifyMap(k, coefficients, self.r, new_k, size, cv2.CV_32FC1)
        # fixed point: remap runs about twice as fast, at 1/32 px interpolation steps
        return cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)


def rectifier_from_camera_info(msg) -> Rectifier:
    """The Rectifier of a sensor_msgs/CameraInfo (or any object with its fields); raises InputError."""
    return Rectifier.create(msg.distortion_model, msg.d, msg.k, getattr(msg, "p", None), getattr(msg, "r", None),
                            int(msg.width), int(msg.height))


def camera_info_key(msg) -> tuple:
    """Hashable content of a CameraInfo's calibration (the header is left out: it changes every frame)."""
    def values(field):
        data = getattr(msg, field, None)
        return () if data is None else tuple(float(v) for v in np.asarray(data, dtype=np.float64).reshape(-1))

    return (str(msg.distortion_model), values("d"), values("k"), values("p"), values("r"), int(msg.width),
            int(msg.height))


class RectifierCache:
    """One Rectifier per CameraInfo content, so a node receiving the same CameraInfo every frame builds maps once.

    Invalid CameraInfos are not cached: ``get`` raises their InputError every time (cheap: no maps are built).
    """

    def __init__(self, max_entries: int = MAX_CAMERA_INFOS):
        self.max_entries = max_entries
        self._rectifiers: dict[tuple, Rectifier] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rectifiers)

    def get(self, msg) -> Rectifier:
        key = camera_info_key(msg)
        rectifier = self._rectifiers.get(key)
        if rectifier is not None:
            return rectifier
        with self._lock:
            rectifier = self._rectifiers.get(key)
            if rectifier is None:
                rectifier = rectifier_from_camera_info(msg)
                if len(self._rectifiers) >= self.max_entries:
                    self._rectifiers.pop(next(iter(self._rectifiers)))
                self._rectifiers[key] = rectifier
            return rectifier
