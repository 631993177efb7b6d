"""A one-picture overview of a synthetic keyframe: cameras, their depth and semantics, and the occupancy from above."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from distillnerf.occ3d import OCC3D_PALETTE
from distillnerf_train.synth.scene import FREE, OCC3D_CLASSES, SKY_LABEL
from distillnerf_train.synth.world import Keyframe

PALETTE = np.array(OCC3D_PALETTE, np.uint8)  # Occ3D class colours, plus sky:
SKY_COLOUR = np.array([135, 206, 235], np.uint8)


def colour_semantics(labels: np.ndarray) -> np.ndarray:
    out = PALETTE[np.minimum(labels, FREE)]
    out[labels == SKY_LABEL] = SKY_COLOUR
    return out


def bird_eye(semantics: np.ndarray) -> np.ndarray:
    """Top-down image of an (X, Y, Z) grid: the class of the highest occupied voxel; x up, y left, as in ego view."""
    occupied = semantics != FREE
    top = np.where(occupied.any(axis=2), semantics.shape[2] - 1 - np.argmax(occupied[:, :, ::-1], axis=2), -1)
    labels = np.where(top >= 0, np.take_along_axis(semantics, np.maximum(top, 0)[..., None], axis=2)[..., 0], FREE)
    image = PALETTE[labels]
    return image[::-1, ::-1]  # row 0 = far ahead (+x), column 0 = left (+y)


def save_preview(keyframe: Keyframe, path: str | os.PathLike, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    cams = keyframe.cameras
    n = len(cams)
    fig = plt.figure(figsize=(3.0 * n + 5.0, 7.2), dpi=110)
    grid = fig.add_gridspec(3, n + 2, width_ratios=[1.0] * n + [0.9, 0.9])
    far = max(float(np.percentile(c.depth[c.depth > 0], 98)) for c in cams if (c.depth > 0).any())
    for j, cam in enumerate(cams):
        for row, (image, kw) in enumerate([(cam.rgb, {}),
                                           (np.where(cam.sky, np.nan, cam.depth), dict(cmap="turbo", vmin=0, vmax=far)),
                                           (colour_semantics(cam.semantic), {})]):
            ax = fig.add_subplot(grid[row, j])
            ax.imshow(image, interpolation="nearest", **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(cam.name.replace("CAM_", ""), fontsize=9)
            if j == 0:
                ax.set_ylabel(["RGB", "depth (camera z)", "semantics"][row], fontsize=9)
    ax = fig.add_subplot(grid[:, n:])
    ax.imshow(bird_eye(keyframe.occupancy.semantics), extent=(40, -40, -40, 40), interpolation="nearest")
    ax.set_title("occupancy (Occ3D, top view, ego frame)", fontsize=9)
    ax.set_xlabel("y (m, left positive)")
    ax.set_ylabel("x (m, forward)")
    present = [c for c in np.unique(keyframe.occupancy.semantics) if c != FREE]
    ax.legend(handles=[Patch(color=PALETTE[c] / 255.0, label=OCC3D_CLASSES[c]) for c in present], fontsize=7,
              loc="lower left", framealpha=0.8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
