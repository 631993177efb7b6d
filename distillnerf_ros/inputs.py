"""The node's input checks, with no rclpy: each camera's calibration from its CameraInfo, and what an image must
satisfy before it may wait for its set.

Runs on the executor thread; everything here is cheap (headers only, no decoding). A CameraInfo is checked once
when it arrives, its distortion becomes a cached rectifier, and the image's intrinsics are those of the rectified
camera. An image whose size disagrees with the camera's CameraInfo is held (one per camera) until a CameraInfo
of its size arrives: a driver that changes resolution sends both, in either order, and the first image at the
new size is not lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distillnerf_ros import conversions as cv
from distillnerf_ros.rectification import Rectifier, RectifierCache


@dataclass
class CameraFrame:
    """One checked input image waiting for its set (``header`` makes it acceptable to message_filters)."""

    camera: str
    header: object
    msg: object
    size: tuple[int, int]  # (width, height) of the transmitted image
    intrinsics: np.ndarray  # K of the (rectified) image at ``size``
    rectifier: Rectifier | None = None  # None: the image is used as it comes


@dataclass
class CameraCalibration:
    """What one CameraInfo says, checked: the rectified camera's K at ``size`` and how to get there."""

    intrinsics: np.ndarray
    size: tuple[int, int]
    rectifier: Rectifier | None


class InputGate:
    """Per-camera calibration state and image admission. ``fallback_intrinsics(camera, size)`` gives K when no
    CameraInfo arrived yet (the rig file's)."""

    def __init__(self, compressed: bool, fallback_intrinsics, names_frames: bool = True):
        """``names_frames``: the calibration is keyed by camera name (a rig file, no TF), so an image whose
        frame_id names another frame is worth a word."""
        self.compressed = compressed
        self._fallback = fallback_intrinsics
        self._names_frames = names_frames
        self._frame_id_noted: set[str] = set()
        self._calibration: dict[str, CameraCalibration | cv.InputError] = {}
        self._rectifiers = RectifierCache()
        self._held: dict[str, tuple[object, tuple[int, int]]] = {}  # camera -> (image, size) awaiting CameraInfo

    # -- CameraInfo -------------------------------------------------------------------------------------------
    def on_camera_info(self, camera: str, msg) -> CameraFrame | None:
        """Check and keep the camera's calibration; returns a held image it now admits. Raises InputError (the
        camera's images are then refused until a usable CameraInfo arrives)."""
        try:
            k = cv.camera_info_intrinsics(msg)
            rectifier = self._rectifiers.get(msg)
        except cv.InputError as error:
            self._calibration[camera] = error
            raise
        size = (int(msg.width), int(msg.height))
        intrinsics = k if rectifier.is_identity else rectifier.intrinsics
        self._calibration[camera] = CameraCalibration(intrinsics, size, None if rectifier.is_identity else rectifier)
        held = self._held.get(camera)
        if held is not None and held[1] == size:
            del self._held[camera]
            return self._frame(camera, held[0], size)
        return None

    # -- images -----------------------------------------------------------------------------------------------
    def admit(self, camera: str, msg) -> CameraFrame | None:
        """The checked frame of an image, or None while it is held for a CameraInfo of its size. Raises InputError
        for an image the node cannot use."""
        size = cv.compressed_image_size(msg) if self.compressed else cv.raw_image_size(msg)
        calibration = self._calibration.get(camera)
        if isinstance(calibration, cv.InputError):
            raise cv.InputError(calibration.kind, f"last camera_info unusable: {calibration}")
        if calibration is not None and calibration.size != size:
            replaced = self._held.get(camera)
            self._held[camera] = (msg, size)
            if replaced is not None:  # a second image at the new size and still no CameraInfo for it
                raise cv.InputError("size", f"image {size[0]}x{size[1]} disagrees with camera_info "
                                            f"{calibration.size[0]}x{calibration.size[1]} (no camera_info of the "
                                            "new size arrived)")
            return None
        self._held.pop(camera, None)
        return self._frame(camera, msg, size)

    def frame_id_note(self, camera: str, frame_id: str) -> str | None:
        """Once per camera: the warning for an image whose frame_id is not its rig entry's name (its pixels are
        taken to have that entry's calibration; its depth keeps the image's frame_id)."""
        if not self._names_frames or not frame_id or frame_id == camera or camera in self._frame_id_noted:
            return None
        self._frame_id_noted.add(camera)
        return (f"{camera}: image frame_id {frame_id!r} is not the rig's camera {camera!r}: its extrinsics come "
                f"from the rig entry {camera!r}; its depth keeps frame_id {frame_id!r}")

    def _frame(self, camera: str, msg, size: tuple[int, int]) -> CameraFrame:
        calibration = self._calibration.get(camera)
        if calibration is None:
            return CameraFrame(camera, msg.header, msg, size, self._fallback(camera, size))
        return CameraFrame(camera, msg.header, msg, size, calibration.intrinsics, calibration.rectifier)
