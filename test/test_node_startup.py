"""Start-up contract of the node process: warmup_only exits 0 after the ready line; a missing CUDA device or a
missing checkpoint is a clear error and a non-zero exit. (The three processes run side by side: each one
imports torch, which is most of its time.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed")

REPO = Path(__file__).resolve().parents[1]
PARAM_FILE = REPO / "config" / "distillnerf.param.yaml"


def start(*parameters: str) -> subprocess.Popen:
    env = dict(os.environ, RCUTILS_LOGGING_USE_STDOUT="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    args = [sys.executable, "-m", "distillnerf_ros.node", "--ros-args", "--params-file", str(PARAM_FILE)]
    for parameter in parameters:
        args += ["-p", parameter]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_warmup_only_exits_zero_and_device_or_checkpoint_errors_exit_non_zero(ros_domain_id):
    import torch

    warmup = start("model_config:=tiny", "random_weights:=true", "device:=cpu", "warmup_only:=true",
                   "use_tf:=false")
    no_checkpoint = start("checkpoint:=/nonexistent/model.pt", "device:=cpu")
    no_cuda = None if torch.cuda.is_available() else start("model_config:=tiny", "random_weights:=true",
                                                           "device:=cuda")
    out, _ = warmup.communicate(timeout=300)
    assert warmup.returncode == 0, out
    assert "distillnerf ready: device=cpu cameras=6" in out

    out, _ = no_checkpoint.communicate(timeout=300)
    assert no_checkpoint.returncode != 0
    assert "cannot start: checkpoint /nonexistent/model.pt not found" in out

    if no_cuda is not None:
        out, _ = no_cuda.communicate(timeout=300)
        assert no_cuda.returncode != 0
        assert "device 'cuda' requested but CUDA is not available" in out
        assert "distillnerf ready" not in out


def test_bad_parameters_and_calibration_end_in_one_line_and_exit_2(ros_domain_id, tmp_path):
    """Wrong types, values out of range, a calibration file that is not YAML or lacks a camera: one `cannot start:`
    line, exit code 2, no traceback, never a `ready` node that publishes nothing."""
    partial = tmp_path / "five_cameras.yaml"
    rig = (REPO / "model" / "distillnerf" / "configs" / "rigs" / "nuscenes.yaml").read_text()
    import yaml

    data = yaml.safe_load(rig)
    data["cameras"] = [c for c in data["cameras"] if c["name"] != "CAM_BACK"]
    partial.write_text(yaml.safe_dump(data))
    broken = tmp_path / "broken.yaml"
    broken.write_text("cameras: [\n")
    tiny = ("model_config:=tiny", "random_weights:=true", "device:=cpu", "use_tf:=false")
    cases = {
        "camera_timeout": start(*tiny, "camera_timeout:=2"),
        "occupancy_threshold": start(*tiny, "occupancy_threshold:=2.0"),
        "not valid YAML": start(*tiny, f"calibration_file:={broken}"),
        "has no camera CAM_BACK": start(*tiny, f"calibration_file:={partial}"),
    }
    for expected, process in cases.items():
        out, _ = process.communicate(timeout=300)
        assert process.returncode == 2, out
        assert "Traceback" not in out and "distillnerf ready" not in out, out
        lines = [line for line in out.splitlines() if "cannot start:" in line]
        assert len(lines) == 1 and expected in lines[0], out
