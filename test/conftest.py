"""Shared fixtures: isolated ROS 2 domains, the shared real-data folder, and skips with reasons."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

try:  # Tests are correctness checks, not benchmarks: one thread avoids oversubscribing small CI machines.
    import torch

    torch.set_num_threads(int(os.environ.get("DISTILLNERF_TEST_THREADS", "1")))
except ImportError:  # pragma: no cover - torch is part of the environment
    pass

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
NUSCENES_TINY = SHARED_DATA / "nuscenes-tiny"
OCC3D_SAMPLE = SHARED_DATA / "occ3d-sample"

# Domain ids 1..100 are safe on Linux; spread runs of different processes so concurrent suites do not meet.
_domain_ids = itertools.count((os.getpid() * 7) % 90)


def next_domain_id() -> int:
    return 1 + next(_domain_ids) % 100


@pytest.fixture
def ros_domain_id(monkeypatch) -> int:
    """A fresh ROS_DOMAIN_ID for this test (exported, so child processes inherit it)."""
    domain_id = next_domain_id()
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain_id))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return domain_id


@pytest.fixture
def ros_context(ros_domain_id):
    """An initialised rclpy context on this test's own domain; shut down afterwards."""
    rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain_id)
    try:
        yield context
    finally:
        context.try_shutdown()


@pytest.fixture(scope="session")
def nuscenes_tiny() -> Path:
    if not (NUSCENES_TINY / "v1.0-tiny").is_dir():
        pytest.skip(f"real nuScenes frames not present at {NUSCENES_TINY} (../shared is absent in a user's clone)")
    return NUSCENES_TINY


@pytest.fixture(scope="session")
def occ3d_sample() -> Path:
    files = sorted(OCC3D_SAMPLE.glob("*/labels.npz"))
    if not files:
        pytest.skip(f"Occ3D sample not present under {OCC3D_SAMPLE} (../shared is absent in a user's clone)")
    return files[0]


@pytest.fixture(scope="session")
def ddad_mini() -> Path:
    root = SHARED_DATA / "ddad-mini"
    if not (root / "scene_dataset_v1.0.json").is_file():
        pytest.skip(f"DDAD-mini not present at {root} (../shared is absent in a user's clone)")
    return root
