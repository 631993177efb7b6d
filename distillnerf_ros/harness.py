"""Drive a running node from outside: start it as a process and wait for its ready line, feed it real camera
frames over DDS, and read its memory. Used by the end-to-end tests and ``distillnerf bench-node``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distillnerf_ros.node import READY_PREFIX


@dataclass
class CameraFrame:
    """One camera image of a nuScenes sample, as a driver would send it."""

    camera: str
    jpeg: bytes
    intrinsics: np.ndarray  # K at (width, height)
    width: int
    height: int
    offset_ns: int  # stamp relative to the sample's earliest camera


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


@dataclass
class NodeProcess:
    """The node in its own process; stdout and stderr are collected line by line (the ready line included)."""

    args: list[str]
    env: dict | None = None
    lines: list[str] = field(default_factory=list)

    def start(self, timeout: float = 180.0) -> "NodeProcess":
        env = dict(os.environ if self.env is None else self.env)
        env.update(RCUTILS_LOGGING_USE_STDOUT="1", RCUTILS_LOGGING_BUFFERED_STREAM="0", PYTHONUNBUFFERED="1")
        env.setdefault("OMP_NUM_THREADS", "1")
        self.process = subprocess.Popen([sys.executable, "-m", "distillnerf_ros.node", *self.args], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._ready.is_set():
            if self.process.poll() is not None:
                self._reader.join(5.0)
                raise RuntimeError(f"node exited with {self.process.returncode} before ready:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"node not ready within {timeout} s:\n{self.log()}")
            self._ready.wait(0.1)
        return self

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if READY_PREFIX in line:
                self._ready.set()

    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for_log(self, text: str, timeout: float = 20.0, start: int = 0) -> str | None:
        """The first log line from index ``start`` containing ``text`` (None after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[start:]:
                if text in line:
                    return line
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        return None

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        raise RuntimeError("no VmRSS")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(2)  # SIGINT, as ros2 launch does
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5.0)
        self._reader.join(5.0)
        return self.process.returncode


def node_args(**parameters) -> list[str]:
    """``--ros-args -p name:=value ...`` for the given parameters (lists as YAML flow sequences)."""
    args = ["--ros-args"]
    for name, value in parameters.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            text = "[" + ",".join(str(v) for v in value) + "]"
        else:
            text = str(value)
        args += ["-p", f"{name}:={text}"]
    return args


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
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
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
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
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
