"""The demo's scores: what the node published for one keyframe (``FrameResult``) and its scores against the data.

Works on plain arrays, so scores are tested on synthetic arrays without a node. Scores use the project's one
implementation in ``distillnerf.metrics``; the bird's-eye rule is the node's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from distillnerf.occ3d import FREE_LABEL as OCC3D_FREE, GROUND_LABELS, OccGridSpec

from distillnerf_ros.output_messages import bird_eye_view

GRID = OccGridSpec()  # the node publishes the Occ3D grid
GRID_ORIGIN = np.asarray(GRID.origin)
VOXEL_SIZE = GRID.voxel_size[0]


@dataclass
class FrameResult:
    """One keyframe: the node's outputs and, where the data has it, the exact ground truth."""

    stamp_ns: int
    inputs: dict[str, np.ndarray]  # camera -> HxWx3 uint8 RGB as replayed
    depth: dict[str, np.ndarray]  # camera -> predicted camera-z depth (m), at the node's render size
    occupancy_grid: np.ndarray | None = None  # [ix, iy] int8, node's bird's-eye grid
    semantics: np.ndarray | None = None  # [200, 200, 16] uint8, 17 free
    camera_visible: np.ndarray | None = None  # [200, 200, 16] uint8
    query_points: np.ndarray | None = None  # [M, 3]
    query_relevance: np.ndarray | None = None  # [M]
    processing_ms: float | None = None  # node's ~/debug/processing_time_ms
    latency_ms: float | None = None  # wall time: last input published -> last output received
    depth_gt: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> exact depth at prediction size
    depth_lidar: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> LiDAR depth (0 = none), same size
    semantics_gt: np.ndarray | None = None  # Occ3D labels of this keyframe
    mask_camera_gt: np.ndarray | None = None


def resample_nearest(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resampling at pixel centres: exact depth values are kept, never blended across edges."""
    rows = np.minimum(((np.arange(height) + 0.5) * image.shape[0] / height).astype(int), image.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * image.shape[1] / width).astype(int), image.shape[1] - 1)
    return image[rows][:, cols]


def bird_eye_ground_truth(semantics: np.ndarray, mask_camera: np.ndarray) -> np.ndarray:
    """The ground-truth counterpart of the node's grid: the node's own rule (``conversions.bird_eye_view``)."""
    return bird_eye_view(semantics != OCC3D_FREE, semantics, mask_camera, GROUND_LABELS)


def clean_for_json(value):
    """JSON-safe copy: NaN/inf -> null (strict JSON has no NaN), numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): clean_for_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_for_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _summary(values: list[float]) -> dict | None:
    if not values:
        return None
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()), "median": float(np.median(array)), "max": float(array.max()),
            "count": int(array.size)}


def compute_metrics(frames: list[FrameResult]) -> dict:
    """Depth errors against exact depth (per image, averaged), Occ3D IoU/mIoU (camera mask) and node timing."""
    from distillnerf.metrics import MeanAccumulator, Occ3DMetrics, depth_metrics

    depth, lidar = MeanAccumulator(), MeanAccumulator()
    per_camera: dict[str, MeanAccumulator] = {}
    occ = Occ3DMetrics(use_mask=True)
    for frame in frames:
        for camera, gt in frame.depth_gt.items():
            if camera in frame.depth:
                scores = depth_metrics(frame.depth[camera], gt)
                depth.update(scores)
                per_camera.setdefault(camera, MeanAccumulator()).update(scores)
        for camera, gt in frame.depth_lidar.items():
            if camera in frame.depth and (gt > 0).any():
                lidar.update(depth_metrics(frame.depth[camera], gt, 1e-3, 80.0))
        if frame.semantics is not None and frame.semantics_gt is not None and frame.mask_camera_gt is not None:
            occ.update(frame.semantics, frame.semantics_gt, frame.mask_camera_gt)
    result = {
        "frames": len(frames),
        "depth": ({**depth.compute(), "images": depth.items,
                   "per_camera_abs_rel": {c: a.compute().get("abs_rel") for c, a in per_camera.items()}}
                  if depth.items else None),
        "depth_lidar": {**lidar.compute(), "images": lidar.items} if lidar.items else None,
        "occupancy": occ.compute() if occ.samples else None,
        "node_processing_ms": _summary([f.processing_ms for f in frames if f.processing_ms is not None]),
        "end_to_end_latency_ms": _summary([f.latency_ms for f in frames if f.latency_ms is not None]),
    }
    return result


def headline(metrics: dict) -> str:
    """One line of the figures that matter, for the terminal."""
    parts = []
    if metrics.get("depth"):
        parts.append(f"depth AbsRel {metrics['depth']['abs_rel']:.3f}")
    if metrics.get("depth_lidar"):
        parts.append(f"depth AbsRel vs LiDAR {metrics['depth_lidar']['abs_rel']:.3f} "
                     f"(d1 {metrics['depth_lidar']['d1']:.3f})")
    if metrics.get("occupancy"):
        parts.append(f"occupancy mIoU {metrics['occupancy']['miou']:.1f}%, IoU "
                     f"{metrics['occupancy']['geometric_iou']:.1f}%")
    if metrics.get("end_to_end_latency_ms"):
        parts.append(f"latency {metrics['end_to_end_latency_ms']['median']:.0f} ms (median, end to end)")
    if metrics.get("node_processing_ms"):
        parts.append(f"node processing {metrics['node_processing_ms']['median']:.0f} ms")
    return "; ".join(parts) or "no scores (no ground truth and no outputs)"
