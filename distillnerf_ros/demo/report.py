"""The demo report: ``metrics.json``, PNG figures and ``index.html`` from what the node published.

Works on plain arrays (numpy + matplotlib), so figures and scores are tested on synthetic arrays without a node.
Scores use the project's one implementation in ``distillnerf.metrics``; the bird's-eye rule is the node's own.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distillnerf.occ3d import FREE_LABEL as OCC3D_FREE, GROUND_LABELS, OCC3D_PALETTE, OccGridSpec

from distillnerf_ros.output_messages import GRID_FREE, GRID_OCCUPIED, GRID_UNKNOWN, bird_eye_view

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


def _clean(value):
    """JSON-safe copy: NaN/inf -> null (strict JSON has no NaN), numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
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


# ----------------------------------------------------------------------------------------------------- figures

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _palette() -> np.ndarray:
    return np.asarray(OCC3D_PALETTE, dtype=np.float64) / 255.0


def figure_inputs(frame: FrameResult, path: Path) -> Path:
    plt = _plt()
    cameras = list(frame.inputs)
    fig, axes = plt.subplots(2, 3, figsize=(12, 4.6), squeeze=False)
    for ax, camera in zip(axes.flat, cameras):
        ax.imshow(frame.inputs[camera])
        ax.set_title(camera, fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle("Camera inputs (replayed from the bag)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def figure_depth(frame: FrameResult, path: Path, max_depth: float = 60.0) -> Path:
    plt = _plt()
    cameras = list(frame.depth)
    rows = 2 if frame.depth_gt else 1
    fig, axes = plt.subplots(rows, len(cameras), figsize=(2.3 * len(cameras), 1.5 * rows + 0.5), squeeze=False,
                             layout="constrained")
    for col, camera in enumerate(cameras):
        shown = axes[0, col].imshow(frame.depth[camera], cmap="turbo", vmin=0, vmax=max_depth)
        axes[0, col].set_title(f"{camera}\npredicted", fontsize=7)
        if rows == 2:
            gt = frame.depth_gt.get(camera)
            if gt is not None:
                axes[1, col].imshow(np.where(gt > 0, gt, np.nan), cmap="turbo", vmin=0, vmax=max_depth)
            axes[1, col].set_title("true", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.colorbar(shown, ax=axes, shrink=0.8, label="depth (m, camera z)")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _grid_image(grid: np.ndarray) -> np.ndarray:
    """[ix, iy] grid -> RGB image with x forward (up) and y left (left), as seen from above."""
    colours = np.zeros(grid.shape + (3,))
    colours[grid == GRID_UNKNOWN] = (0.55, 0.55, 0.55)
    colours[grid == GRID_FREE] = (1.0, 1.0, 1.0)
    colours[grid == GRID_OCCUPIED] = (0.1, 0.1, 0.1)
    return colours[::-1, ::-1]  # rows: x from +40 (top) to -40; columns: y from +40 (left) to -40


def figure_bird_eye(frame: FrameResult, path: Path) -> Path:
    plt = _plt()
    panels = [("predicted", frame.occupancy_grid)]
    if frame.semantics_gt is not None and frame.mask_camera_gt is not None:
        panels.append(("ground truth", bird_eye_ground_truth(frame.semantics_gt, frame.mask_camera_gt)))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.4), squeeze=False)
    for ax, (title, grid) in zip(axes.flat, panels):
        if grid is not None:
            ax.imshow(_grid_image(grid), extent=(40, -40, -40, 40))
            ax.plot([0], [0], marker="^", color="tab:red", markersize=8)
        ax.set_title(f"bird's-eye occupancy: {title}", fontsize=9)
        ax.set_xlabel("y (m, left)")
        ax.set_ylabel("x (m, forward)")
    fig.suptitle("black occupied, white free, grey not seen by any camera", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _voxel_points(semantics: np.ndarray, visible: np.ndarray | None, limit: int = 20000):
    occupied = semantics != OCC3D_FREE
    if visible is not None:
        occupied &= visible.astype(bool)
    index = np.argwhere(occupied)
    if len(index) > limit:  # even thinning keeps the figure light and deterministic
        index = index[np.linspace(0, len(index) - 1, limit).astype(int)]
    centres = GRID_ORIGIN + (index + 0.5) * VOXEL_SIZE
    labels = semantics[tuple(index.T)]
    return centres, labels


def figure_semantic_3d(frame: FrameResult, path: Path) -> Path:
    plt = _plt()
    palette = _palette()
    panels = [("predicted", frame.semantics, frame.camera_visible)]
    if frame.semantics_gt is not None:
        panels.append(("ground truth", frame.semantics_gt, frame.mask_camera_gt))
    fig = plt.figure(figsize=(5.5 * len(panels), 5))
    for i, (title, semantics, visible) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1, projection="3d")
        if semantics is not None:
            centres, labels = _voxel_points(semantics, visible)
            ax.scatter(centres[:, 0], centres[:, 1], centres[:, 2], c=palette[np.minimum(labels, 17)], s=1.5,
                       marker="s", depthshade=False)
        ax.set_xlim(-40, 40)
        ax.set_ylim(-40, 40)
        ax.set_zlim(-1, 5.4)
        ax.set_box_aspect((80, 80, 20))
        ax.view_init(elev=35, azim=-150)
        ax.set_title(f"semantic occupancy: {title} (camera-visible)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def figure_query(frame: FrameResult, path: Path, text: str) -> Path | None:
    if frame.query_points is None or frame.query_relevance is None or len(frame.query_points) == 0:
        return None
    plt = _plt()
    points = np.asarray(frame.query_points, dtype=np.float64)
    relevance = np.asarray(frame.query_relevance, dtype=np.float64)
    ix = np.clip(((points[:, 0] - GRID_ORIGIN[0]) / VOXEL_SIZE).astype(int), 0, 199)
    iy = np.clip(((points[:, 1] - GRID_ORIGIN[1]) / VOXEL_SIZE).astype(int), 0, 199)
    heat = np.full((200, 200), np.nan)
    order = np.argsort(relevance)  # the column keeps its highest relevance
    heat[ix[order], iy[order]] = relevance[order]
    fig, ax = plt.subplots(figsize=(5, 4.6))
    shown = ax.imshow(heat[::-1, ::-1], extent=(40, -40, -40, 40), cmap="inferno", vmin=0.0, vmax=1.0)
    ax.plot([0], [0], marker="^", color="tab:cyan", markersize=8)
    ax.set_title(f"open-vocabulary query \"{text}\" (relevance vs the class vocabulary, max per column)", fontsize=9)
    ax.set_xlabel("y (m, left)")
    ax.set_ylabel("x (m, forward)")
    fig.colorbar(shown, ax=ax, label="relevance")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# -------------------------------------------------------------------------------------------------------- page

def _format(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def write_report(out: str | Path, frames: list[FrameResult], info: dict, query_text: str = "",
                 showcase: int = -1) -> dict:
    """Write ``metrics.json``, the PNGs of one showcase frame and ``index.html`` into ``out``; return metrics.

    ``info`` describes the run (data source, weights, seed, ...); a ``weights`` entry starting with "random"
    labels every page as random weights so such figures cannot pass for a trained model's.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = compute_metrics(frames)
    document = {"info": info, "query": query_text or None, "metrics": metrics, "headline": headline(metrics)}
    (out / "metrics.json").write_text(json.dumps(_clean(document), indent=2, sort_keys=True, allow_nan=False) + "\n",
                                      encoding="utf-8")
    figures: list[tuple[str, Path]] = []
    if frames:
        frame = frames[showcase]
        if frame.inputs:
            figures.append(("Inputs", figure_inputs(frame, out / "inputs.png")))
        if frame.depth:
            figures.append(("Depth: predicted and true", figure_depth(frame, out / "depth.png")))
        if frame.occupancy_grid is not None:
            figures.append(("Bird's-eye occupancy", figure_bird_eye(frame, out / "occupancy_bev.png")))
        if frame.semantics is not None:
            figures.append(("Semantic occupancy (3D)", figure_semantic_3d(frame, out / "semantic_occupancy.png")))
        query = figure_query(frame, out / "query.png", query_text) if query_text else None
        if query is not None:
            figures.append((f"Query \"{query_text}\"", query))
    random = str(info.get("weights", "")).lower().startswith("random")
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_format(v)}</td></tr>" for k, v in info.items())
    score_rows = []
    if metrics["depth"]:
        for key in ("abs_rel", "sq_rel", "rmse", "rmse_log", "d1", "d2", "d3"):
            score_rows.append((f"depth {key}", metrics["depth"].get(key)))
    if metrics.get("depth_lidar"):
        for key in ("abs_rel", "sq_rel", "rmse", "rmse_log", "d1", "d2", "d3"):
            score_rows.append((f"depth vs LiDAR {key}", metrics["depth_lidar"].get(key)))
    if metrics["occupancy"]:
        score_rows += [("occupancy mIoU (%)", metrics["occupancy"]["miou"]),
                       ("occupancy geometric IoU (%)", metrics["occupancy"]["geometric_iou"])]
    for key in ("end_to_end_latency_ms", "node_processing_ms"):
        if metrics[key]:
            score_rows.append((f"{key} median / max", f"{metrics[key]['median']:.1f} / {metrics[key]['max']:.1f}"))
    scores = "".join(f"<tr><th>{html.escape(k)}</th><td>{_format(v)}</td></tr>" for k, v in score_rows) or (
        "<tr><td>no scores: this data has neither exact ground truth nor LiDAR</td></tr>")
    banner = ("<p class='warn'>RANDOM WEIGHTS: these outputs come from an untrained model and only show that the "
              "pipeline works.</p>" if random else "")
    images = "".join(f"<h2>{html.escape(title)}</h2><img src='{p.name}' alt='{html.escape(title)}'>"
                     for title, p in figures)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>DistillNeRF demo</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}} img{{max-width:100%}}
table{{border-collapse:collapse}} th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left}}
.warn{{background:#fdd;border:2px solid #c00;padding:8px;font-weight:bold}}</style></head>
<body><h1>DistillNeRF ROS 2 demo{' (random weights)' if random else ''}</h1>{banner}
<p>{html.escape(document['headline'])}</p>
<h2>Scores ({metrics['frames']} frames)</h2><table>{scores}</table>
<h2>Run</h2><table>{rows}</table>
{images}
<p>All numbers: <a href="metrics.json">metrics.json</a>.</p></body></html>
"""
    (out / "index.html").write_text(page, encoding="utf-8")
    return document
