"""The demo pipeline: synthetic drive (``distillnerf synth``) -> bag -> ``distillnerf_node`` over ROS -> report.

The steps live beside it: ``options`` (what to run, which weights), ``ground_truth``, ``lidar_truth`` and
``bag_lidar_truth`` (what to score against), ``lockstep`` (the replay into the node), ``frames`` (outputs ->
arrays), ``report``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from distillnerf_ros.node_process import NodeProcess, bag_input_remaps, ros_arguments

from .ground_truth import ground_truth_index
from .lockstep import bag_cameras, replay_lockstep
from .options import SYNTH_VERSION, DemoError, DemoOptions, node_model_parameters, say
from .results import FrameResult


@dataclass
class Stage:
    name: str
    seconds: float


@dataclass
class DemoRun:
    frames: list[FrameResult]
    info: dict
    stages: list[Stage] = field(default_factory=list)


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


def run_demo(options: DemoOptions) -> DemoRun:
    from distillnerf_ros.bag.writer import calibration_path, write_nuscenes_bag

    stages: list[Stage] = []
    started = time.monotonic()
    model_parameters, weights = node_model_parameters(options)  # fail before any slow step or file
    work = Path(options.out) / "work"
    work.mkdir(parents=True, exist_ok=True)

    ground_truth = lidar = None
    if options.bag is not None:
        from distillnerf_ros.demo.bag_lidar_truth import BagLidarTruth

        bag, source = Path(options.bag), f"user bag {options.bag}"
        lidar = BagLidarTruth.open(bag)  # score depth against the bag's own LiDAR, when it has one
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
    node = NodeProcess(ros_arguments(parameters, bag_input_remaps(cameras)))
    try:
        say("starting the node: " + shlex.join(node.command))
        try:
            node.start(options.startup_timeout)
        except (RuntimeError, TimeoutError) as error:
            raise DemoError(str(error)) from None
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
                         "LiDAR in the bag (depth only)" if lidar and options.bag is not None else
                         "LiDAR of each keyframe (depth only)" if lidar else "none"),
        "feature query": ("received" if any(f.query_points is not None for f in frames) else
                          "not published by the node (no query, or its model has no text encoder)"),
        "node command": shlex.join(node.command),
        "cpu cores": os.cpu_count(),
        "total seconds": round(time.monotonic() - started, 1),
        **{f"{s.name} seconds": round(s.seconds, 1) for s in stages},
    }
    return DemoRun(frames, info, stages)
