"""Keyframe throughput of the synthetic world: all cameras, the LiDAR and the occupancy with both masks."""

from __future__ import annotations

import os
import platform
import time

import numpy as np

from distillnerf_train.synth.config import SynthSource
from distillnerf_train.synth.world import SyntheticWorld


def bench_keyframes(sizes: list[tuple[int, int]], seed: int = 0, repeats: int = 3, rig: str = "nuscenes",
                    config: SynthSource = "default") -> dict:
    """Median wall-clock seconds per full keyframe (and per part) at each camera size, and the process CPU seconds
    (which other jobs on a shared machine do not inflate); files are not written."""
    results = []
    for width, height in sizes:
        world = SyntheticWorld(seed, config, rig, (width, height), drive_seconds=repeats + 1.0)
        world.keyframe(0.0)  # warm-up: caches ray grids
        parts = {"cameras": [], "lidar": [], "occupancy": [], "keyframe": [], "cpu": []}
        for r in range(repeats):
            t = 0.5 * (r + 1)
            c0, t0 = time.process_time(), time.perf_counter()
            key = world.keyframe(t)  # what a dataset writer calls: sensors in parallel threads
            parts["keyframe"].append(time.perf_counter() - t0)
            parts["cpu"].append(time.process_time() - c0)
            t0 = time.perf_counter()  # the parts, one after the other
            lidar = world.scan_lidar(t)
            t1 = time.perf_counter()
            cams = [world.render_camera(name, t + d) for name, d in world.camera_delays().items()]
            t2 = time.perf_counter()
            world.occupancy(t, cams, lidar)
            parts["lidar"].append(t1 - t0)
            parts["cameras"].append(t2 - t1)
            parts["occupancy"].append(time.perf_counter() - t2)
        median = {k: float(np.median(v)) for k, v in parts.items()}
        results.append({"size": f"{width}x{height}", "cameras": len(world.rig.cameras),
                        "seconds_per_keyframe": round(median["keyframe"], 3),
                        "keyframes_per_second": round(1.0 / median["keyframe"], 3),
                        "cpu_seconds_per_keyframe": round(median["cpu"], 3),
                        "seconds": {k: round(v, 3) for k, v in median.items() if k not in ("keyframe", "cpu")},
                        "lidar_points": int(key.lidar.points.shape[0]),
                        "threads": world.config.compute.threads})
    return {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (os.cpu_count), {platform.python_version()}",
            "repeats": repeats, "results": results}
