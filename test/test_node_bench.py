"""`distillnerf bench-node` runs on the real nuScenes frames and reports per-stage times and a rate table."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed")


def test_bench_node_reports_overhead_and_rates(nuscenes_tiny, ros_domain_id):
    result = subprocess.run(
        [sys.executable, "-m", "distillnerf.cli", "bench-node", "--dataroot", str(nuscenes_tiny), "--frames", "3",
         "--rates", "4", "--seconds", "1.5"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "six 1600x900 nuScenes images per set" in out
    for kind in ("CompressedImage (JPEG) input", "Image rgb8 input"):
        block = out[out.index(kind):]
        for stage in ("callbacks (checks + sync)", "conversion", "publishing", "total"):
            line = next(l for l in block.splitlines() if l.strip().startswith(stage))
            mean = float(re.search(r"mean\s+([\d.]+)", line).group(1))
            assert 0.0 < mean < 5000.0, line
    row = next(l for l in out.splitlines() if l.strip().startswith("4.0"))
    rate, sent, synced, processed = (float(v) for v in row.split()[:4])
    assert sent == 6 and synced <= sent and processed <= synced
    assert row.split()[-1] in {"yes", "no"}


@pytest.mark.slow
def test_soak_node_reports_no_false_dropout_for_healthy_cameras(nuscenes_tiny, ros_domain_id):
    """Six healthy cameras streamed into a real node process: /diagnostics counts every image and no dropout."""
    result = subprocess.run([sys.executable, "-m", "distillnerf.cli", "soak-node", "--random-weights", "--rate", "4",
                             "--seconds", "3", "--dataroot", str(nuscenes_tiny)],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "false dropouts: 0 " in result.stdout
    received = result.stdout.split("images received per camera: ")[1].splitlines()[0]
    assert received.count(": 12") == 6, received  # 4 Hz x 3 s, every image of every camera
