"""``distillnerf demo``: the orchestration pieces, the clear failure without weights, and one real end-to-end run
(real node process, real DDS, seeded random weights) on the tiny real frames."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from distillnerf.cli import main
from distillnerf_ros.bag.replay import BagMessage
from distillnerf_ros.demo.frames import decode_depth
from distillnerf_ros.demo.lockstep import keyframe_groups
from distillnerf_ros.demo.options import DemoError, DemoOptions, node_model_parameters
from distillnerf_ros.node_process import bag_input_remaps, ros_arguments


def test_keyframe_groups_cut_at_a_full_camera_set():
    topics = ["/LIDAR_TOP/points", "/A/camera_info", "/A/image/compressed", "/B/camera_info", "/B/image/compressed",
              "/LIDAR_TOP/points", "/B/image/compressed", "/A/image/compressed", "/A/image/compressed"]
    messages = [BagMessage(t, i, b"") for i, t in enumerate(topics)]
    groups = list(keyframe_groups(messages, {"/A/image/compressed", "/B/image/compressed"}))
    assert [[m.timestamp_ns for m in g] for g in groups] == [[0, 1, 2, 3, 4], [5, 6, 7]]  # the rest is incomplete


def test_node_command_sets_parameters_and_remaps_inputs():
    command = ros_arguments({"camera_names": ["CAM_FRONT", "CAM_BACK"], "random_weights": True,
                             "camera_timeout": 3600.0}, bag_input_remaps(["CAM_FRONT", "CAM_BACK"]))
    args = command[command.index("--ros-args") + 1:]
    assert "camera_names:=[CAM_FRONT,CAM_BACK]" in args and "random_weights:=true" in args
    assert "camera_timeout:=3600.0" in args
    assert "/distillnerf/input/CAM_BACK/image/compressed:=/CAM_BACK/image/compressed" in args
    assert "/distillnerf/input/CAM_FRONT/camera_info:=/CAM_FRONT/camera_info" in args


def test_weights_choice_and_the_missing_checkpoint_message(tmp_path):
    parameters, label = node_model_parameters(DemoOptions(random_weights=True, seed=3))
    assert parameters == {"model_config": "tiny", "random_weights": True, "random_seed": 3}
    assert label.startswith("random weights")
    with pytest.raises(DemoError, match="--random-weights"):
        node_model_parameters(DemoOptions(checkpoint=str(tmp_path / "none.pt")))
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"x")
    assert node_model_parameters(DemoOptions(checkpoint=str(checkpoint)))[0] == {"checkpoint": str(checkpoint)}


def test_demo_without_weights_fails_fast_and_clearly(tmp_path, capsys):
    missing = tmp_path / "missing.pt"  # as if the shipped checkpoint were absent
    assert main(["demo", "--out", str(tmp_path / "out"), "--checkpoint", str(missing)]) == 1
    error = capsys.readouterr().err
    assert "no trained checkpoint" in error and "--random-weights" in error
    assert not (tmp_path / "out").exists()


def test_decode_depth_honours_row_padding():
    from sensor_msgs.msg import Image

    depth = np.arange(6, dtype=np.float32).reshape(2, 3)
    padded = np.zeros((2, 4), dtype=np.float32)
    padded[:, :3] = depth
    message = Image(height=2, width=3, encoding="32FC1", is_bigendian=0, step=16)
    message.data = padded.tobytes()
    assert np.array_equal(decode_depth(message), depth)


def synth_available() -> bool:
    from distillnerf.cli import build_parser

    _, unavailable = build_parser()
    return "synth" not in unavailable


@pytest.mark.slow
def test_demo_end_to_end_on_the_synthetic_world_with_random_weights(tmp_path, ros_domain_id):
    """The default path: synth command -> bag -> node process -> lock-step replay over DDS -> scored report."""
    if not synth_available():
        pytest.skip("the `distillnerf synth` command is not installed")
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "distillnerf.cli", "demo", "--random-weights", "--frames", "2", "--size", "228x128",
         "--out", str(out), "--query", "car"],
        capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"report: {out.resolve() / 'index.html'}" in result.stdout and "[RANDOM WEIGHTS]" in result.stdout
    document = json.loads((out / "metrics.json").read_text())
    metrics = document["metrics"]
    assert metrics["frames"] == 2 and document["info"]["ground truth"] == "exact (synthetic world)"
    assert document["info"]["weights"].startswith("random weights")
    assert metrics["depth"]["images"] == 12 and metrics["depth"]["abs_rel"] > 0  # scored against exact depth
    assert set(metrics["depth"]["per_camera_abs_rel"]) == {
        "CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT"}
    assert metrics["occupancy"]["samples"] == 2 and metrics["occupancy"]["voxels"] > 0
    assert metrics["node_processing_ms"]["count"] == 2 and metrics["end_to_end_latency_ms"]["median"] > 0
    assert document["headline"] in result.stdout
    for name in ("inputs.png", "depth.png", "occupancy_bev.png", "semantic_occupancy.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    assert "RANDOM WEIGHTS" in (out / "index.html").read_text()
    assert (out / "work" / "bag" / "calibration.yaml").is_file()


def _children(pid: int) -> list[int]:
    from pathlib import Path as _Path

    found = []
    for task in _Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(p) for p in task.read_text().split()]
    return found


def _running(pid: int) -> bool:
    from pathlib import Path as _Path

    status = _Path(f"/proc/{pid}/status")
    try:
        state = next(line for line in status.read_text().splitlines() if line.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return False
    return "Z" not in state.split()[1]


@pytest.mark.slow
def test_sigterm_stops_the_demo_and_its_node_with_one_line(tmp_path, ros_domain_id):
    """SIGTERM mid-replay: one line, exit 143, and the node process it started is stopped, not left behind."""
    import signal
    import time

    if not synth_available():
        pytest.skip("the `distillnerf synth` command is not installed")
    demo = subprocess.Popen(
        [sys.executable, "-m", "distillnerf.cli", "demo", "--random-weights", "--frames", "3", "--size", "228x128",
         "--out", str(tmp_path / "report")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        node_pids = []
        for line in demo.stdout:
            if "keyframe 1" in line:
                node_pids = [p for p in _children(demo.pid) if _running(p)]
                break
        assert node_pids, "the demo never reached its first keyframe"
        demo.send_signal(signal.SIGTERM)
        _, stderr = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    deadline = time.monotonic() + 10
    while any(_running(p) for p in node_pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_running(p) for p in node_pids), "the node process outlived the demo"
