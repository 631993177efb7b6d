"""Drive a running node from outside: feed it real camera frames over DDS, as a camera driver would. Used by the
end-to-end tests and ``distillnerf bench-node`` (the node process itself: ``node_process``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distillnerf_ros.conversions import set_stamp


@dataclass
class CameraFrame:
    """One camera image of a nuScenes sample, as a driver would send it."""

    camera: str
    jpeg: bytes
    intrinsics: np.ndarray  # K at (width, height)
    width: int
    height: int
    offset_ns: int  # stamp relative to the sample's earliest camera


#: The real frames beside a checkout (``../shared/data``); ``NUSCENES_DATAROOT`` or ``--dataroot`` elsewhere.
DEFAULT_DATAROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nuscenes-tiny"


def add_frames_arguments(parser) -> None:
    """``--dataroot`` and ``--version`` of the tools that send real nuScenes frames to a node."""
    parser.add_argument("--dataroot", default=os.environ.get("NUSCENES_DATAROOT", str(DEFAULT_DATAROOT)),
                        help="nuScenes dataroot (v1.0-tiny is enough) whose real 1600x900 JPEGs are sent")
    parser.add_argument("--version", default="v1.0-tiny")


def samples_of(args, tool: str) -> list[dict] | None:
    """The samples of ``--dataroot``/``--version``; None after one line saying why there are none."""
    from distillnerf.rig import NUSCENES_CAMERAS

    if not (Path(args.dataroot) / args.version).is_dir():
        print(f"{tool}: no nuScenes {args.version} under {args.dataroot} (set --dataroot)")
        return None
    return load_nuscenes_samples(args.dataroot, NUSCENES_CAMERAS, args.version)


def load_nuscenes_samples(dataroot: str | os.PathLike, cameras, version: str = "v1.0-tiny") -> list[dict]:
    """Per sample, {camera: CameraFrame} with real JPEG bytes, calibrated K and the real stamp offsets."""
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes(version=version, dataroot=str(dataroot), verbose=False)
    samples = []
    for sample in nusc.sample:
        records = {camera: nusc.get("sample_data", sample["data"][camera]) for camera in cameras}
        first = min(record["timestamp"] for record in records.values())
        frames = {}
        for camera, record in records.items():
            calibration = nusc.get("calibrated_sensor", record["calibrated_sensor_token"])
            frames[camera] = CameraFrame(camera, (Path(dataroot) / record["filename"]).read_bytes(),
                                         np.asarray(calibration["camera_intrinsic"], dtype=np.float64),
                                         record["width"], record["height"], (record["timestamp"] - first) * 1000)
        samples.append(frames)
    return samples


def resized_frame(frame: CameraFrame, width: int, height: int, quality: int = 90) -> CameraFrame:
    """The same real frame re-encoded at a smaller size, K rescaled to match (small, fast test traffic)."""
    import cv2

    from distillnerf_ros.conversions import scale_intrinsics

    image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return CameraFrame(frame.camera, data.tobytes(), scale_intrinsics(frame.intrinsics, (frame.width, frame.height),
                                                                      (width, height)),
                       width, height, frame.offset_ns)


class FramePlayer:
    """Publishes camera sets (CameraInfo + image per camera) to a node's ``~/input`` topics, like a driver."""

    def __init__(self, node, target: str = "/distillnerf", cameras=(), compressed: bool = True,
                 reliable: bool = False):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
        self.compressed = compressed
        self.images, self.infos = {}, {}
        for camera in cameras:
            topic = f"{target}/input/{camera}/image" + ("/compressed" if compressed else "")
            self.images[camera] = node.create_publisher(CompressedImage if compressed else Image, topic, qos)
            self.infos[camera] = node.create_publisher(CameraInfo, f"{target}/input/{camera}/camera_info", qos)

    def connected(self) -> bool:
        return all(p.get_subscription_count() > 0 for p in [*self.images.values(), *self.infos.values()])

    def publish_info(self, camera: str, stamp_ns: int, intrinsics, width: int, height: int) -> None:
        from sensor_msgs.msg import CameraInfo

        msg = CameraInfo(width=int(width), height=int(height), distortion_model="plumb_bob")
        msg.header.frame_id = camera
        set_stamp(msg.header.stamp, stamp_ns)
        msg.k = [float(v) for v in np.asarray(intrinsics, dtype=np.float64).reshape(-1)]
        msg.d = [0.0] * 5
        self.infos[camera].publish(msg)

    def image_message(self, camera: str, stamp_ns: int, frame: CameraFrame | None = None, data: bytes | None = None,
                      encoding: str = "rgb8", size: tuple[int, int] | None = None):
        """A CompressedImage (the frame's JPEG or ``data``) or an Image (the frame decoded to ``encoding``)."""
        from sensor_msgs.msg import CompressedImage, Image

        if self.compressed:
            msg = CompressedImage(format="jpeg")
            msg.data = frame.jpeg if data is None else data
        else:
            import cv2

            if data is None:
                bgr = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
                pixels = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if encoding == "rgb8" else bgr
                data, size = pixels.tobytes(), (pixels.shape[1], pixels.shape[0])
            channels = {"rgb8": 3, "bgr8": 3, "mono8": 1, "16UC1": 2, "yuv422": 2}.get(encoding, 3)
            msg = Image(width=size[0], height=size[1], encoding=encoding, step=size[0] * channels)
            msg.data = data
        msg.header.frame_id = camera
        set_stamp(msg.header.stamp, stamp_ns)
        return msg

    def publish_set(self, frames: dict, base_ns: int, skip=(), encoding: str = "rgb8", pace: float = 0.02) -> int:
        """Publish one sample at ``base_ns`` (+ each camera's real offset); returns the set's stamp (the newest).

        Images go out ``pace`` s apart, as real cameras fire: a burst of six full-size images overflows the
        loopback UDP buffers, and a best-effort reader then loses whole images."""
        newest = 0
        for index, (camera, frame) in enumerate(frames.items()):
            if index and pace:
                time.sleep(pace)
            if camera in skip or camera not in self.images:
                continue
            stamp = base_ns + frame.offset_ns
            newest = max(newest, stamp)
            self.publish_info(camera, stamp, frame.intrinsics, frame.width, frame.height)
            self.images[camera].publish(self.image_message(camera, stamp, frame, encoding=encoding))
        return newest
