"""A synchronised camera set -> the model's inputs: images decoded (JPEG at a reduced scale where possible),
rectified, resized to the model input, with intrinsics, extrinsics and which cameras are present.

Runs on the node's worker thread; the six decodes run on a small thread pool (OpenCV releases the GIL while
decoding, remapping and resizing).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from distillnerf_ros import conversions as cv
from distillnerf_ros.inputs import CameraFrame


class ModelInputs:
    """``camera_names`` and ``input_size`` are the model's; ``extrinsics`` (``calibration.Extrinsics``) gives
    camera -> base and the rig's K for a model camera never seen (it is masked out)."""

    def __init__(self, camera_names, input_size: tuple[int, int], compressed: bool, extrinsics, threads: int):
        self.camera_names = list(camera_names)
        self.input_size = tuple(input_size)
        self.compressed = compressed
        self._extrinsics = extrinsics
        self._last_intrinsics: dict[str, np.ndarray] = {}
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(threads, os.cpu_count() or 1)),
                                        thread_name_prefix="distillnerf-decode")

    def image(self, frame: CameraFrame) -> np.ndarray:
        """One image at the model input size, rectified when its CameraInfo has distortion."""
        try:
            if self.compressed:
                # a rectified image is remapped at the decoded scale: decode no smaller than the input size
                image = cv.decode_compressed(frame.msg, target_size=self.input_size)
            else:
                image = cv.raw_image_to_rgb(frame.msg)
            if frame.rectifier is not None:
                image = frame.rectifier.rectify(image)
            return cv.resize_rgb(image, self.input_size)
        except cv.InputError as error:
            error.camera = frame.camera
            raise

    def prepare(self, frames: dict[str, CameraFrame]):
        """(images, intrinsics, cam_to_ego, valid), each in the model's camera order."""
        width, height = self.input_size
        present = [camera for camera in self.camera_names if camera in frames]
        decoded = dict(zip(present, self._pool.map(self.image, [frames[c] for c in present])))
        images, intrinsics, cam_to_ego, valid = [], [], [], []
        for camera in self.camera_names:
            frame = frames.get(camera)
            if frame is None:
                images.append(np.zeros((height, width, 3), np.uint8))
                k = self._last_intrinsics.get(camera)
                intrinsics.append(k if k is not None else self._extrinsics.placeholder_intrinsics(camera,
                                                                                                 (width, height)))
                cam_to_ego.append(self._rig_pose(camera))
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

    def _rig_pose(self, camera: str) -> np.ndarray:
        try:
            return self._extrinsics.cam_to_base(camera, camera)
        except cv.InputError:
            return np.eye(4)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
