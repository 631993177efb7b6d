"""The demo's report writer on synthetic arrays: exact scores, strict JSON, the figures and the page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from distillnerf_ros.demo.report import write_report
from distillnerf_ros.demo.results import FrameResult, bird_eye_ground_truth, compute_metrics, resample_nearest

CAMERAS = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT")


def make_frame(seed: int, depth_scale: float = 1.1, wrong_voxels: int = 0) -> FrameResult:
    rng = np.random.default_rng(seed)
    semantics = np.full((200, 200, 16), 17, dtype=np.uint8)
    semantics[:, :, 0] = 11  # road everywhere
    semantics[110:120, 95:105, 1:5] = 4  # a car ahead
    semantics[60:70, 130:140, 1:8] = 15  # a building behind-left
    mask = np.zeros_like(semantics)
    mask[50:150, 50:150, :] = 1
    predicted = semantics.copy()
    if wrong_voxels:
        predicted[110:110 + wrong_voxels, 95, 1] = 15  # some car voxels called manmade
    gt_depth = {c: rng.uniform(2.0, 50.0, size=(16, 28)).astype(np.float32) for c in CAMERAS}
    return FrameResult(
        stamp_ns=1_533_151_603_000_000_000 + seed,
        inputs={c: rng.integers(0, 255, size=(32, 56, 3), dtype=np.uint8) for c in CAMERAS},
        depth={c: d * depth_scale for c, d in gt_depth.items()},
        occupancy_grid=bird_eye_ground_truth(predicted, mask),
        semantics=predicted, camera_visible=mask,
        query_points=np.array([[20.0, 0.0, 1.0], [-5.0, 10.0, 2.0]]), query_relevance=np.array([0.9, 0.1]),
        processing_ms=100.0 + seed, latency_ms=150.0 + seed,
        depth_gt=gt_depth, semantics_gt=semantics, mask_camera_gt=mask)


def test_scores_are_exact_on_known_errors():
    metrics = compute_metrics([make_frame(0), make_frame(1)])
    assert metrics["frames"] == 2
    assert metrics["depth"]["abs_rel"] == pytest.approx(0.1, rel=1e-5)
    assert metrics["depth"]["d1"] == 1.0 and metrics["depth"]["images"] == 12
    assert set(metrics["depth"]["per_camera_abs_rel"]) == set(CAMERAS)
    assert metrics["occupancy"]["miou"] == pytest.approx(100.0)
    assert metrics["occupancy"]["geometric_iou"] == pytest.approx(100.0)
    assert metrics["node_processing_ms"] == {"mean": 100.5, "median": 100.5, "max": 101.0, "count": 2}
    assert metrics["end_to_end_latency_ms"]["max"] == 151.0


def test_wrong_voxels_lower_the_semantic_iou_as_hand_computed():
    metrics = compute_metrics([make_frame(0, wrong_voxels=4)])
    car = metrics["occupancy"]["per_class_iou"]["car"]
    manmade = metrics["occupancy"]["per_class_iou"]["manmade"]
    assert car == pytest.approx(100.0 * (400 - 4) / 400)  # 10x10x4 car voxels, 4 now predicted manmade
    assert manmade == pytest.approx(100.0 * 700 / 704)
    assert metrics["occupancy"]["geometric_iou"] == pytest.approx(100.0)


def test_bird_eye_ground_truth_follows_the_node_rule():
    frame = make_frame(0)
    grid = bird_eye_ground_truth(frame.semantics_gt, frame.mask_camera_gt)
    assert grid.shape == (200, 200) and grid.dtype == np.int8
    assert grid[115, 100] == 100  # car column
    assert grid[100, 60] == 0  # road only, seen
    assert grid[10, 10] == -1  # outside every camera


def test_resample_nearest_keeps_exact_values():
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert np.array_equal(resample_nearest(image, 3, 4), image)
    small = resample_nearest(np.repeat(np.repeat(image, 2, 0), 2, 1), 3, 4)
    assert np.array_equal(small, image)


def test_report_files_strict_json_and_random_weights_label(tmp_path):
    frames = [make_frame(0), make_frame(1)]
    frames[1].depth_gt = {}  # a frame without depth ground truth still counts for occupancy
    document = write_report(tmp_path, frames, {"data": "synthetic", "weights": "random weights (--random-weights)"},
                            query_text="car")
    saved = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert saved["metrics"]["depth"]["images"] == 6 and saved["query"] == "car"
    assert saved["headline"] == document["headline"] and "AbsRel 0.100" in saved["headline"]
    for name in ("inputs.png", "depth.png", "occupancy_bev.png", "semantic_occupancy.png", "query.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
        assert f"src='{name}'" in (tmp_path / "index.html").read_text()
    page = (tmp_path / "index.html").read_text()
    assert "RANDOM WEIGHTS" in page and "(random weights)" in page


def test_report_without_ground_truth_or_query(tmp_path):
    frame = make_frame(0)
    frame.depth_gt, frame.semantics_gt, frame.mask_camera_gt = {}, None, None
    frame.query_points = frame.query_relevance = None
    document = write_report(tmp_path, [frame], {"data": "user bag", "weights": "checkpoint cpu.pt"}, query_text="car")
    assert document["metrics"]["depth"] is None and document["metrics"]["occupancy"] is None
    assert not (tmp_path / "query.png").exists()
    page = (tmp_path / "index.html").read_text()
    assert "RANDOM WEIGHTS" not in page and "no exact ground truth" not in page  # latency rows remain
    assert "end_to_end_latency_ms" in page


def test_demo_defaults_come_from_the_config_file(tmp_path):
    from distillnerf_ros.demo.options import load_demo_defaults

    defaults = load_demo_defaults()
    assert defaults.query == "car" and defaults.frames == 3 and defaults.out == Path("demo_output")
    bad = tmp_path / "demo.yaml"
    bad.write_text("frames: 2\nframez: 3\n")
    with pytest.raises(ValueError, match="framez"):
        load_demo_defaults(bad)
    bad.write_text("device: gpu\n")
    with pytest.raises(ValueError, match="device: must be one of 'cpu', 'cuda', 'auto'"):
        load_demo_defaults(bad)
    bad.write_text("data: some/dataroot\n")
    assert load_demo_defaults(bad).data == Path("some/dataroot")
