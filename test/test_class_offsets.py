"""Fitting the model config's class_score_offsets: the mIoU it maximises is the Occ3D one, and on a hand-built set
whose classes are separable only with an offset the fit finds it."""

from __future__ import annotations

import numpy as np
import pytest

from distillnerf.metrics import Occ3DMetrics
from distillnerf.occ3d import FREE_LABEL, OCC3D_CLASSES
from distillnerf_train.class_offsets import ClassOffsetFit, confusion_miou

CAR, TRUCK = 4, 10


def test_confusion_miou_is_the_occ3d_miou():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 18, (20, 20, 4))
    pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, 18, gt.shape))
    mask = rng.random(gt.shape) < 0.8
    metrics = Occ3DMetrics()
    metrics.update(pred, gt, mask)
    assert confusion_miou(metrics.confusion) == pytest.approx(metrics.compute()["miou"])


def hand_built_keyframe():
    """Eight occupied voxels, four cars and four trucks, all nearer the car prototype: the trucks by 0.1, the cars
    by 1.0, so any truck offset in (0.1, 1.0) labels every voxel right; two free voxels; one voxel outside the
    camera mask, labelled wrong on purpose (it must not count)."""
    gt = np.array([CAR] * 4 + [TRUCK] * 4 + [FREE_LABEL] * 2 + [TRUCK])
    occupied = np.array([True] * 8 + [False] * 2 + [True])
    mask = np.array([True] * 10 + [False])
    scores = np.full((9, FREE_LABEL), -100.0, dtype=np.float32)
    scores[:, CAR] = 0.0
    scores[:4, TRUCK] = -1.0
    scores[4:8, TRUCK] = -0.1
    scores[8, TRUCK] = -50.0
    return occupied, scores, gt, mask


def test_fit_finds_the_offset_that_separates_the_classes():
    fit = ClassOffsetFit()
    fit.update(*hand_built_keyframe())
    result = fit.fit()
    # without offsets every voxel is a car: car IoU 4 / 8, truck 0
    assert result["miou_without"] == pytest.approx(25.0)
    assert result["miou_with"] == pytest.approx(100.0) and result["keyframes"] == 1
    offsets = np.zeros(FREE_LABEL)
    for name, value in result["class_score_offsets"].items():
        offsets[OCC3D_CLASSES.index(name)] = value
    occupied, scores, gt, mask = hand_built_keyframe()
    assert 0.1 < offsets[TRUCK] - offsets[CAR] < 1.0
    assert np.array_equal(np.argmax(scores[:8] + offsets, axis=1), gt[:8])


def test_fit_refuses_scores_that_do_not_match_the_occupied_voxels():
    occupied, scores, gt, mask = hand_built_keyframe()
    with pytest.raises(ValueError, match=r"class scores must be \[9, 17\]"):
        ClassOffsetFit().update(occupied, scores[:5], gt, mask)
    with pytest.raises(ValueError, match="no keyframes"):
        ClassOffsetFit().fit()
