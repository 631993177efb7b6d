"""The demo pipeline: synthetic drive (``distillnerf synth``) -> bag -> ``distillnerf_node`` over ROS -> report.

The bag is replayed in lock-step (one keyframe's messages, then wait for the node's outputs of that keyframe)
rather than in real time, so every keyframe is scored on any machine however slow its CPU, and the figures are
the same run to run. Latency is measured per keyframe as wall time from the last input published to the last
output received, next to the node's own ``~/debug/processing_time_ms``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .report import FrameResult, resample_nearest

NODE_NAME = "distillnerf"
READY_PREFIX = "distillnerf ready:"
SYNTH_VERSION = "v1.0-synth"


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and what to do."""


@dataclass
class DemoOptions:
    out: Path = Path("demo_output")
    data: Path | None = None  # a nuScenes dataroot instead of the synthetic world
    version: str = SYNTH_VERSION
    bag: Path | None = None  # a user's bag instead of converting
    query: str = "car"
    frames: int = 3
    seed: int = 0
    size: str = "400x224"
    checkpoint: str = ""
    random_weights: bool = False
    model_config: str = "tiny"
    device: str = "cpu"
    frame_timeout: float = 120.0
    startup_timeout: float = 180.0


def load_demo_defaults(name_or_path: str = "demo") -> DemoOptions:
    """The demo's defaults from ``config/demo.yaml`` (or another file); unknown keys are errors."""
    from dataclasses import fields

    from distillnerf.config_files import load_yaml, resolve_config

    data = load_yaml(name_or_path)
    known = {f.name for f in fields(DemoOptions)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{resolve_config(name_or_path)}: unknown demo settings {unknown} (known: {sorted(known)})")
    if "out" in data:
        data["out"] = Path(data["out"])
    return DemoOptions(**data)


@dataclass
class Stage:
    name: str
    seconds: float


@dataclass
class DemoRun:
    frames: list[FrameResult]
    info: dict
    stages: list[Stage] = field(default_factory=list)


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


# --------------------------------------------------------------------------------------------------- weights

def node_model_parameters(options: DemoOptions) -> tuple[dict, str]:
    """Node parameters selecting the weights, and the label the report carries."""
    if options.random_weights:
        return ({"model_config": options.model_config, "random_weights": True, "random_seed": options.seed},
                f"random weights (--random-weights: model config {options.model_config}, seed {options.seed})")
    from distillnerf.checkpoint import SHIPPED_CHECKPOINTS

    checkpoint = Path(options.checkpoint) if options.checkpoint else SHIPPED_CHECKPOINTS / "cpu.pt"
    if not checkpoint.is_file():
        raise DemoError(
            f"no trained checkpoint at {checkpoint}. The shipped checkpoint is trained by `distillnerf train` "
            f"(see docs/training.md); pass --checkpoint PATH, or --random-weights to check the pipeline with an "
            f"untrained model (the report is then labelled 'random weights').")
    return {"checkpoint": str(checkpoint)}, f"checkpoint {checkpoint}"


# ------------------------------------------------------------------------------------------------------ data

def run_synth(options: DemoOptions, target: Path) -> Path:
    """Generate the synthetic drive with the ``distillnerf synth`` command (a subprocess: the ROS package must
    not import the training package)."""
    if target.exists():
        shutil.rmtree(target)
    command = [sys.executable, "-m", "distillnerf.cli", "synth", "--out", str(target), "--scenes", "1",
               "--frames", str(options.frames), "--seed", str(options.seed), "--size", options.size]
    say("generating the synthetic drive: " + shlex.join(command[2:]))
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise DemoError(f"`distillnerf synth` failed (exit {result.returncode}):\n{result.stderr[-3000:]}"
                        f"{result.stdout[-1000:]}")
    if not (target / options.version).is_dir():
        raise DemoError(f"`distillnerf synth` wrote no {options.version} tables under {target}")
    return target


@dataclass(frozen=True)
class GroundTruthIndex:
    """Where the exact answers of each replayed image live (synthetic world only)."""

    root: Path
    sample_data: dict[tuple[str, int], tuple[str, str]]  # (channel, stamp_us) -> (sample_data token, sample token)

    def depth(self, channel: str, stamp_us: int) -> np.ndarray | None:
        token = self.sample_data.get((channel, stamp_us))
        file = self.root / "gt" / "depth" / f"{token[0]}.npz" if token else None
        if file is None or not file.is_file():
            return None
        with np.load(file) as data:
            return np.asarray(data["depth"], dtype=np.float32)

    def occupancy(self, channel: str, stamp_us: int) -> tuple[np.ndarray, np.ndarray] | None:
        token = self.sample_data.get((channel, stamp_us))
        files = sorted((self.root / "gt" / "occ3d").glob(f"*/{token[1]}/labels.npz")) if token else []
        if not files:
            return None
        with np.load(files[0]) as data:
            return np.asarray(data["semantics"], np.uint8), np.asarray(data["mask_camera"], np.uint8)


def ground_truth_index(dataroot: Path, version: str) -> GroundTruthIndex | None:
    if not (dataroot / "gt").is_dir():
        return None
    from distillnerf_ros.bag.nuscenes_source import open_nuscenes

    nusc = open_nuscenes(dataroot, version)
    index = {(sd["channel"], int(sd["timestamp"])): (sd["token"], sd["sample_token"]) for sd in nusc.sample_data}
    return GroundTruthIndex(dataroot, index)


# ------------------------------------------------------------------------------------------------------ node

def node_executable() -> list[str]:
    found = shutil.which("distillnerf_node", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                                   os.environ.get("PATH", "")]))
    return [found] if found else [sys.executable, "-c", "import sys; from distillnerf_ros.node import main; "
                                                        "sys.exit(main())"]


def node_command(cameras: list[str], parameters: dict) -> list[str]:
    command = node_executable() + ["--ros-args"]
    for name, value in parameters.items():
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, (list, tuple)):
            value = "[" + ",".join(str(v) for v in value) + "]"
        command += ["-p", f"{name}:={value}"]
    for cam in cameras:
        command += ["-r", f"/{NODE_NAME}/input/{cam}/image/compressed:=/{cam}/image/compressed",
                    "-r", f"/{NODE_NAME}/input/{cam}/camera_info:=/{cam}/camera_info"]
    return command


class NodeProcess:
    """The node in its own process; its log is kept (last lines) for error messages."""

    def __init__(self, command: list[str]):
        env = dict(os.environ, RCUTILS_LOGGING_USE_STDOUT="1", PYTHONUNBUFFERED="1")
        self.command = command
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=env)
        self.lines: deque[str] = deque(maxlen=200)
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            if READY_PREFIX in line:
                self.ready.set()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(list(self.lines)[-lines:])

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.1):
            if self.process.poll() is not None:
                raise DemoError(f"the node exited with code {self.process.returncode} before it was ready:\n"
                                f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise DemoError(f"the node was not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=2)


# ----------------------------------------------------------------------------------------------- replay loop

def keyframe_groups(messages, image_topics: set[str]):
    """Consecutive bag messages cut into sets that hold one image of every camera (and what came with them)."""
    group, seen = [], set()
    for message in messages:
        group.append(message)
        if message.topic in image_topics:
            seen.add(message.topic)
            if seen == image_topics:
                yield group
                group, seen = [], set()


class OutputCollector:
    """Subscriptions to the node's outputs; each arrival is stored with its monotonic receive time."""

    def __init__(self, node, cameras: list[str], want_query: bool):
        from distillnerf_msgs.msg import SemanticOccupancy
        from nav_msgs.msg import OccupancyGrid
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image, PointCloud2
        from std_msgs.msg import Float64

        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.received: dict[str, list] = {}
        self.lock = threading.Lock()
        topics = {f"/{NODE_NAME}/output/{cam}/depth": Image for cam in cameras}
        topics[f"/{NODE_NAME}/output/occupancy_grid"] = OccupancyGrid
        topics[f"/{NODE_NAME}/output/semantic_occupancy"] = SemanticOccupancy
        topics[f"/{NODE_NAME}/debug/processing_time_ms"] = Float64
        if want_query:
            topics[f"/{NODE_NAME}/output/feature_query"] = PointCloud2
        self.required = [t for t in topics if not t.endswith("feature_query")]
        self.subscriptions = {t: node.create_subscription(cls, t, lambda m, t=t: self._store(t, m), qos)
                              for t, cls in topics.items()}

    def _store(self, topic: str, message) -> None:
        with self.lock:
            self.received.setdefault(topic, []).append((time.monotonic(), message))

    def matched(self) -> bool:
        return all(s.get_publisher_count() > 0 for s in self.subscriptions.values())

    def take(self) -> dict[str, tuple[float, object]]:
        """The newest message per topic since the last take, and forget the rest."""
        with self.lock:
            newest = {t: items[-1] for t, items in self.received.items() if items}
            self.received.clear()
        return newest

    def complete(self) -> bool:
        with self.lock:
            return all(self.received.get(t) for t in self.required)


def decode_depth(message) -> np.ndarray:
    if message.encoding != "32FC1":
        raise DemoError(f"depth image encoding {message.encoding}, expected 32FC1")
    data = np.frombuffer(bytes(message.data), dtype=">f4" if message.is_bigendian else "<f4")
    return data.reshape(message.height, message.step // 4)[:, :message.width].astype(np.float32)


def decode_jpeg(data: bytes) -> np.ndarray:
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise DemoError("a replayed camera image is not a decodable JPEG")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def frame_result(group, outputs: dict, cameras: list[str], latency_ms: float,
                 ground_truth: GroundTruthIndex | None, lidar: "LidarTruth | None" = None) -> FrameResult:
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage

    from distillnerf_ros.conversions import point_cloud_to_array

    images = {}
    for message in group:
        channel = message.topic.split("/")[1]
        if message.topic.endswith("/image/compressed") and channel in cameras:
            images[channel] = deserialize_message(message.data, CompressedImage)
    stamp = images[cameras[0]].header.stamp
    frame = FrameResult(stamp_ns=stamp.sec * 10**9 + stamp.nanosec,
                        inputs={c: decode_jpeg(bytes(images[c].data)) for c in cameras}, depth={},
                        latency_ms=latency_ms)
    for cam in cameras:
        depth = outputs.get(f"/{NODE_NAME}/output/{cam}/depth")
        if depth is not None:
            frame.depth[cam] = decode_depth(depth[1])
    grid = outputs.get(f"/{NODE_NAME}/output/occupancy_grid")
    if grid is not None:
        info = grid[1].info
        frame.occupancy_grid = np.asarray(grid[1].data, dtype=np.int8).reshape(info.height, info.width).T
    semantic = outputs.get(f"/{NODE_NAME}/output/semantic_occupancy")
    if semantic is not None:
        size = tuple(int(v) for v in semantic[1].size)
        frame.semantics = np.asarray(semantic[1].labels, dtype=np.uint8).reshape(size)
        frame.camera_visible = np.asarray(semantic[1].camera_visible, dtype=np.uint8).reshape(size)
    processing = outputs.get(f"/{NODE_NAME}/debug/processing_time_ms")
    if processing is not None:
        frame.processing_ms = float(processing[1].data)
    query = outputs.get(f"/{NODE_NAME}/output/feature_query")
    if query is not None:
        cloud = point_cloud_to_array(query[1])
        frame.query_points = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1).astype(np.float64)
        frame.query_relevance = cloud["intensity"].astype(np.float64)
    if lidar is not None:
        for cam in cameras:
            if cam in frame.depth:
                stamp_us = (images[cam].header.stamp.sec * 10**9 + images[cam].header.stamp.nanosec) // 1000
                truth = lidar.depth(cam, stamp_us, frame.depth[cam].shape)
                if truth is not None:
                    frame.depth_lidar[cam] = truth
    if ground_truth is not None:
        for cam in cameras:
            stamp_us = (images[cam].header.stamp.sec * 10**9 + images[cam].header.stamp.nanosec) // 1000
            gt = ground_truth.depth(cam, stamp_us)
            if gt is not None and cam in frame.depth:
                frame.depth_gt[cam] = resample_nearest(gt, *frame.depth[cam].shape)
        first = images[cameras[0]].header.stamp
        occupancy = ground_truth.occupancy(cameras[0], (first.sec * 10**9 + first.nanosec) // 1000)
        if occupancy is not None:
            frame.semantics_gt, frame.mask_camera_gt = occupancy
    return frame


def replay_lockstep(bag: Path, cameras: list[str], frames: int, want_query: bool, frame_timeout: float,
                    node_process: NodeProcess, ground_truth: GroundTruthIndex | None,
                    lidar: "LidarTruth | None" = None) -> list[FrameResult]:
    """Publish one keyframe at a time into the node and collect its outputs before the next."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from distillnerf_ros.bag.replay import BagReplayer

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("distillnerf_demo", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    def spin_until(done, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            if node_process.process.poll() is not None:
                raise DemoError(f"the node exited with code {node_process.process.returncode}:\n"
                                f"{node_process.log_tail()}")
            executor.spin_once(timeout_sec=0.02)
        return True

    try:
        replayer = BagReplayer(node, bag)
        image_topics = {f"/{c}/image/compressed" for c in cameras}
        missing = sorted(image_topics - set(replayer.topics))
        if missing:
            raise DemoError(f"{bag} has no {', '.join(missing)}")
        collector = OutputCollector(node, cameras, want_query)
        inputs = sorted(image_topics | {f"/{c}/camera_info" for c in cameras})
        connected = spin_until(lambda: collector.matched() and all(
            replayer.publishers[t].get_subscription_count() > 0 for t in inputs), 30)
        if not connected:
            raise DemoError(f"the node's topics did not connect within 30 s:\n{node_process.log_tail()}")
        results = []
        for index, group in enumerate(keyframe_groups(replayer.messages(), image_topics)):
            if index >= frames:
                break
            collector.take()
            infos = [m for m in group if m.topic.endswith("/camera_info")]
            for message in infos:  # CameraInfo first and acknowledged, so the node has it before the images
                replayer.publish(message)
            replayer.wait_for_acknowledgements(timeout=5.0, topics=[m.topic for m in infos])
            for attempt in range(2):
                for message in group:
                    if message not in infos or attempt:
                        replayer.publish(message)
                sent = time.monotonic()
                if spin_until(collector.complete, frame_timeout):
                    break
                say(f"frame {index + 1}: no complete output after {frame_timeout:.0f} s, sending it again")
            else:
                raise DemoError(f"the node produced no outputs for keyframe {index + 1}:\n{node_process.log_tail()}")
            if want_query:  # the query cloud comes with the other outputs when the model has a text encoder
                want_query = spin_until(
                    lambda: bool(collector.received.get(f"/{NODE_NAME}/output/feature_query")), 1.0)
            outputs = collector.take()
            latency_ms = (max(arrival for arrival, _ in outputs.values()) - sent) * 1000.0
            results.append(frame_result(group, outputs, cameras, latency_ms, ground_truth, lidar))
            say(f"keyframe {index + 1} (of at most {frames}): outputs after {latency_ms:.0f} ms")
        replayer.wait_for_acknowledgements(timeout=2.0)
        return results
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()


def bag_cameras(bag: Path) -> list[str]:
    """Camera channels of a bag in the model's order (those with an image topic)."""
    from distillnerf.rig import NUSCENES_CAMERAS

    from distillnerf_ros.bag.replay import open_bag

    reader = open_bag(bag)
    try:
        topics = {c.topic for c in reader.connections}
    finally:
        reader.close()
    found = [t.split("/")[1] for t in topics if t.endswith("/image/compressed") and t.count("/") == 3]
    order = {name: i for i, name in enumerate(NUSCENES_CAMERAS)}
    return sorted(found, key=lambda c: (order.get(c, len(order)), c))


# ------------------------------------------------------------------------------------------------------ main

def run_demo(options: DemoOptions) -> DemoRun:
    from distillnerf_ros.bag.writer import calibration_path, write_nuscenes_bag

    stages: list[Stage] = []
    started = time.monotonic()
    model_parameters, weights = node_model_parameters(options)  # fail before any slow step or file
    work = Path(options.out) / "work"
    work.mkdir(parents=True, exist_ok=True)

    ground_truth = lidar = None
    if options.bag is not None:
        bag, source = Path(options.bag), f"user bag {options.bag}"
    else:
        t = time.monotonic()
        if options.data is not None:
            dataroot, version = Path(options.data), options.version
            source = f"nuScenes {version} at {dataroot}"
        else:
            dataroot, version = run_synth(options, work / "synth"), SYNTH_VERSION
            source = f"synthetic world (seed {options.seed}, {options.frames} frames, {options.size})"
            stages.append(Stage("synth", time.monotonic() - t))
        t = time.monotonic()
        bag = work / "bag"
        summary = write_nuscenes_bag(dataroot, version, bag, sweeps=False, overwrite=True, progress=False)
        say(summary.describe())
        ground_truth = ground_truth_index(dataroot, version)
        if ground_truth is None:  # real data: score depth against its LiDAR
            from distillnerf_ros.demo.lidar_truth import LidarTruth

            lidar = LidarTruth.open(dataroot, version)
        stages.append(Stage("bag", time.monotonic() - t))

    cameras = bag_cameras(bag)
    if not cameras:
        raise DemoError(f"{bag} has no /<CAM>/image/compressed topics")
    parameters = {"camera_names": cameras, "compressed": True, "input_qos": "reliable", "device": options.device,
                  "use_tf": False, "query_text": options.query, "use_sim_time": True,
                  "camera_timeout": 3600.0,  # lock-step: cameras are silent while the node infers, not dropped
                  **model_parameters}
    if calibration_path(bag).is_file():
        parameters["calibration_file"] = str(calibration_path(bag).resolve())
    t = time.monotonic()
    node = NodeProcess(node_command(cameras, parameters))
    try:
        say("starting the node: " + shlex.join(node.command))
        node.wait_ready(options.startup_timeout)
        stages.append(Stage("node start-up", time.monotonic() - t))
        t = time.monotonic()
        frames = replay_lockstep(bag, cameras, options.frames, bool(options.query), options.frame_timeout, node,
                                 ground_truth, lidar)
        stages.append(Stage("replay and inference", time.monotonic() - t))
    finally:
        node.stop()
    if not frames:
        raise DemoError(f"{bag} holds no complete set of {len(cameras)} camera images")
    info = {
        "data": source,
        "bag": str(bag),
        "weights": weights,
        "frames": len(frames),
        "cameras": ", ".join(cameras),
        "device": options.device,
        "seed": options.seed,
        "ground truth": ("exact (synthetic world)" if ground_truth else
                         "LiDAR of each keyframe (depth only)" if lidar else "none"),
        "feature query": ("received" if any(f.query_points is not None for f in frames) else
                          "not published by the node (no query, or its model has no text encoder)"),
        "node command": shlex.join(node.command),
        "cpu cores": os.cpu_count(),
        "total seconds": round(time.monotonic() - started, 1),
        **{f"{s.name} seconds": round(s.seconds, 1) for s in stages},
    }
    return DemoRun(frames, info, stages)
