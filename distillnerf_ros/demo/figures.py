"""The demo's PNG figures of one keyframe (matplotlib, headless): inputs, depth, bird's-eye grid, 3D semantics,
a text query's relevance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distillnerf.occ3d import FREE_LABEL as OCC3D_FREE, OCC3D_PALETTE

from distillnerf_ros.output_messages import GRID_FREE, GRID_OCCUPIED, GRID_UNKNOWN

from .results import GRID_ORIGIN, VOXEL_SIZE, FrameResult, bird_eye_ground_truth


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
    ax.set_title(f"query \"{text}\": relevance against the class vocabulary\n"
                 "(open vocabulary, highest per column)", fontsize=9)
    ax.set_xlabel("y (m, left)")
    ax.set_ylabel("x (m, forward)")
    fig.colorbar(shown, ax=ax, label="relevance")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
