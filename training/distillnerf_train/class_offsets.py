"""Fit the model config's ``class_score_offsets``: per-class offsets added to the voxel class scores before the
nearest class is taken, chosen to maximise the Occ3D mIoU over a set of training keyframes (logit adjustment).

Offsets change only which class an occupied voxel takes, never which voxels are occupied, so the fit keeps the
confusion of the voxels predicted free fixed and re-labels the camera-visible occupied ones: each candidate offset
costs one argmax over the stored scores. Coordinate ascent: each class in turn takes the offset from a grid that
scores best with the others held, for a few rounds (never worse than no offsets, which it starts from).
"""

from __future__ import annotations

import math

import numpy as np

from distillnerf.metrics import Occ3DMetrics
from distillnerf.occ3d import FREE_LABEL, OCC3D_CLASSES

NUM_LABELS = FREE_LABEL + 1  # 17 classes and free


def confusion_miou(confusion: np.ndarray) -> float:
    """Occ3D mIoU (%) of a [gt, pred] confusion over 18 labels, by ``distillnerf.metrics.Occ3DMetrics`` itself (0 when
    no class is present)."""
    metrics = Occ3DMetrics()
    metrics.confusion = confusion
    value = metrics.miou()
    return 0.0 if math.isnan(value) else value


class ClassOffsetFit:
    """Accumulates keyframes (occupied mask, class scores of the occupied voxels, Occ3D labels, camera mask), then
    :meth:`fit` returns the offsets by class name with the mIoU without and with them."""

    def __init__(self) -> None:
        self.fixed = np.zeros((NUM_LABELS, NUM_LABELS), dtype=np.int64)  # voxels predicted free
        self.truth: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []
        self.keyframes = 0

    def update(self, occupied: np.ndarray, scores: np.ndarray, gt: np.ndarray, mask_camera: np.ndarray) -> None:
        """``scores`` [M, 17]: the class scores of the occupied voxels, in ``occupied``'s row-major order."""
        occupied, visible = np.asarray(occupied, bool), np.asarray(mask_camera, bool)
        if scores.shape != (int(occupied.sum()), FREE_LABEL):
            raise ValueError(f"class scores must be [{int(occupied.sum())}, {FREE_LABEL}] (one row per occupied "
                             f"voxel), got {list(scores.shape)}")
        gt = np.asarray(gt).astype(np.int64)
        self.fixed[:, FREE_LABEL] += np.bincount(gt[~occupied & visible], minlength=NUM_LABELS)
        keep = visible[occupied]
        self.truth.append(gt[occupied][keep])
        self.scores.append(np.asarray(scores, dtype=np.float32)[keep])
        self.keyframes += 1

    def miou(self, offsets: np.ndarray) -> float:
        truth, scores = self._stacked()
        labels = np.argmax(scores + offsets.astype(np.float32), axis=1)
        confusion = self.fixed + np.bincount(truth * NUM_LABELS + labels, minlength=NUM_LABELS ** 2).reshape(
            NUM_LABELS, NUM_LABELS)
        return confusion_miou(confusion)

    def fit(self, rounds: int = 3, steps: int = 16) -> dict:
        """Offsets on a grid of ``2 * steps + 1`` values spanning +-4 median top-2 score margins."""
        if not self.keyframes:
            raise ValueError("no keyframes with Occ3D labels to fit class offsets on")
        truth, scores = self._stacked()
        offsets = np.zeros(FREE_LABEL)
        before = best = self.miou(offsets)
        if len(scores):
            top2 = np.sort(scores, axis=1)[:, -2:]
            margin = float(np.median(top2[:, 1] - top2[:, 0])) or 1.0
            grid = np.linspace(-4.0, 4.0, 2 * steps + 1) * margin
            for _ in range(rounds):
                improved = False
                for k in range(FREE_LABEL):
                    for value in grid:
                        trial = offsets.copy()
                        trial[k] = value
                        score = self.miou(trial)
                        if score > best + 1e-9:
                            best, offsets, improved = score, trial, True
                if not improved:
                    break
        named = {OCC3D_CLASSES[k]: round(float(v), 4) for k, v in enumerate(offsets) if v != 0.0}
        return {"class_score_offsets": named, "miou_without": before, "miou_with": best,
                "keyframes": self.keyframes}

    def _stacked(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self.truth) > 1:  # concatenated once, reused by every trial
            self.truth, self.scores = [np.concatenate(self.truth)], [np.concatenate(self.scores)]
        if not self.truth:
            return np.zeros(0, np.int64), np.zeros((0, FREE_LABEL), np.float32)
        return self.truth[0], self.scores[0]


__all__ = ["ClassOffsetFit", "confusion_miou"]
