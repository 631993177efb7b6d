"""`distillnerf bench-node` sets the node against its reference (the full-resolution decode of the same JPEGs),
with and without the two volume outputs subscribed, and prints the cost of each output; by default it publishes
the shipped checkpoint's real occupancy. (test_node_bench.py checks the per-stage blocks and the rate table.)"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest


def mean_of(line: str) -> float:
    return float(re.search(r"mean\s+([\d.]+)", line).group(1))


def test_bench_node_prints_the_reference_both_runs_each_output_and_the_ratios(nuscenes_tiny, ros_domain_id):
    pytest.importorskip("rclpy", reason="rclpy is not installed")
    result = subprocess.run(
        [sys.executable, "-m", "distillnerf.cli", "bench-node", "--dataroot", str(nuscenes_tiny), "--frames", "2",
         "--skip-rate"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    head = out.splitlines()[0]
    assert "outputs of model 'cpu'" in head and "shipped checkpoint cpu.pt" in head
    occupied = int(re.search(r"(\d+) occupied voxels", head).group(1))
    assert 1000 < occupied < 640_000  # the checkpoint's own occupancy, not a made-up share
    reference = next(l for l in out.splitlines() if l.strip().startswith("full-resolution decode"))
    assert 0.0 < mean_of(reference) < 5000.0
    every = out[out.index("(b) CompressedImage (JPEG) input, every output subscribed"):out.index("(c) ")]
    for key in ("occupancy_grid", "occupancy", "semantic_occupancy", "depth", "camera_info", "rgb",
                "feature_query"):
        line = next(l for l in every.splitlines() if l.strip().startswith(key + " "))
        assert 0.0 < mean_of(line) < 1000.0, line
    without = out[out.index("(c) CompressedImage (JPEG) input, nobody subscribed to occupancy and "
                            "semantic_occupancy"):]
    assert 0.0 < mean_of(next(l for l in without.splitlines() if l.strip().startswith("total"))) < 5000.0
    ratios = {label: float(value) for label, value in re.findall(r"\((b|c)\) JPEG.*?\s([\d.]+)\s+\(goal", out)}
    assert set(ratios) == {"b", "c"} and all(value > 0 for value in ratios.values())
    assert "goal <= 0.35" in out and "goal <= 0.2" in out


def test_random_weights_publish_the_requested_share_of_voxels(nuscenes_tiny):
    from distillnerf.rig import NUSCENES_CAMERAS
    from distillnerf_ros.bench import load_result
    from distillnerf_ros.harness import load_nuscenes_samples

    samples = load_nuscenes_samples(nuscenes_tiny, NUSCENES_CAMERAS)[:1]
    args = argparse.Namespace(random_weights=True, model_config="tiny", occupied_fraction=0.05, query_text="car")
    backend, threshold, description = load_result(args, samples)
    share = backend.result.occupied.mean()
    assert 0.04 < share < 0.06, share
    assert "random weights" in description and "no query" in description  # tiny has no text encoder
    assert backend.result.occupied.sum() == (backend.result.occupancy_probability > threshold).sum()
