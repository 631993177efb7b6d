"""Metrics against hand-computed cases and the real Occ3D sample."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from distillnerf.cli import main as cli_main
from distillnerf.metrics import MeanAccumulator, Occ3DMetrics, depth_metrics, psnr, ssim


def test_depth_metrics_hand_computed():
    gt = np.array([10.0, 20.0, 0.0, 90.0, 40.0])  # 0 and 90 are outside (1e-3, 80]
    pred = np.array([12.0, 20.0, 5.0, 10.0, 100.0])  # 100 is clamped to 80
    m = depth_metrics(pred, gt)
    p, g = np.array([12.0, 20.0, 80.0]), np.array([10.0, 20.0, 40.0])
    assert m["count"] == 3
    assert m["abs_rel"] == pytest.approx((0.2 + 0 + 1.0) / 3)
    assert m["sq_rel"] == pytest.approx((4 / 10 + 0 + 1600 / 40) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt((4 + 0 + 1600) / 3))
    assert m["rmse_log"] == pytest.approx(math.sqrt(np.mean((np.log(p) - np.log(g)) ** 2)))
    assert m["d1"] == pytest.approx(2 / 3)  # ratios 1.2, 1, 2
    assert m["d2"] == pytest.approx(2 / 3)  # 2 > 1.5625
    assert m["d3"] == pytest.approx(2 / 3)  # 2 > 1.953
    exact = depth_metrics(torch.tensor(g), torch.tensor(g))
    assert exact["abs_rel"] == 0 and exact["rmse"] == 0 and exact["d1"] == 1


def test_depth_metrics_empty_and_shape_errors():
    m = depth_metrics(np.ones(4), np.zeros(4))
    assert m["count"] == 0 and math.isnan(m["abs_rel"])
    with pytest.raises(ValueError, match="shape"):
        depth_metrics(np.ones(3), np.ones(4))
    acc = MeanAccumulator()
    acc.update({"abs_rel": 0.2, "count": 5})
    acc.update({"abs_rel": 0.4})
    acc.update(m)  # NaNs skipped
    assert acc.compute()["abs_rel"] == pytest.approx(0.3)


def test_psnr_and_ssim():
    gt = torch.zeros(1, 3, 16, 16)
    pred = gt + 0.1
    assert psnr(pred, gt) == pytest.approx(20.0)  # mse 0.01
    assert psnr(gt, gt) == math.inf
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :8] = 1
    pred2 = gt.clone()
    pred2[..., 8:] = 1.0  # error only outside the mask
    assert psnr(pred2, gt, mask=mask) == math.inf
    rng = np.random.default_rng(0)
    img = rng.random((2, 3, 24, 32))
    assert ssim(img, img) == pytest.approx(1.0)
    noisy = np.clip(img + rng.normal(0, 0.2, img.shape), 0, 1)
    assert 0.0 < ssim(noisy, img) < 0.9
    # constant images with different means: SSIM luminance term (2ab+c1)/(a^2+b^2+c1)
    a, b = np.full((3, 16, 16), 0.2), np.full((3, 16, 16), 0.6)
    c1 = 0.01 ** 2
    assert ssim(a, b) == pytest.approx((2 * 0.2 * 0.6 + c1) / (0.04 + 0.36 + c1), rel=1e-6)


def test_occ3d_hand_computed():
    gt = np.array([4, 4, 4, 11, 17, 17, 17, 0])
    pred = np.array([4, 4, 11, 11, 17, 4, 17, 17])
    mask = np.array([1, 1, 1, 1, 1, 1, 1, 0])  # the last voxel (class 0) is invisible
    m = Occ3DMetrics()
    m.update(pred, gt, mask)
    r = m.compute()
    # car: tp 2, fp 1 (gt free), fn 1 (pred 11) -> 2/4; driveable: tp 1, fp 1 -> 1/2; class 0 absent (masked)
    assert r["per_class_iou"]["car"] == pytest.approx(50.0)
    assert r["per_class_iou"]["driveable_surface"] == pytest.approx(50.0)
    assert r["per_class_iou"]["others"] is None
    assert r["miou"] == pytest.approx(50.0)
    # geometric: gt occupied {0,1,2,3}, pred occupied {0,1,2,3,5} -> 4 / 5
    assert r["geometric_iou"] == pytest.approx(80.0)
    unmasked = Occ3DMetrics(use_mask=False)
    unmasked.update(pred, gt)
    r2 = unmasked.compute()
    assert r2["per_class_iou"]["others"] == pytest.approx(0.0)  # present in gt, missed
    assert r2["miou"] == pytest.approx(100 / 3)
    assert r2["geometric_iou"] == pytest.approx(4 / 6 * 100)
    with pytest.raises(ValueError, match="mask_camera"):
        Occ3DMetrics().update(pred, gt)
    with pytest.raises(ValueError, match="labels"):
        unmasked.update(pred + 20, gt)


def test_occ3d_real_sample(occ3d_sample):
    data = np.load(occ3d_sample)
    sem, mask = data["semantics"], data["mask_camera"]
    m = Occ3DMetrics()
    m.update(sem, sem, mask)
    r = m.compute()
    assert r["miou"] == pytest.approx(100.0) and r["geometric_iou"] == pytest.approx(100.0)

    # Perturb: every visible car voxel becomes free; every visible vegetation voxel becomes manmade.
    visible = mask.astype(bool)
    cars = int(((sem == 4) & visible).sum())
    veg = int(((sem == 16) & visible).sum())
    manmade = int(((sem == 15) & visible).sum())
    occupied = int(((sem != 17) & visible).sum())
    assert cars > 0 and veg > 0 and manmade > 0
    pert = sem.copy()
    pert[(sem == 4) & visible] = 17
    pert[(sem == 16) & visible] = 15
    m = Occ3DMetrics()
    m.update(pert, sem, mask)
    r = m.compute()
    present = {int(c) for c in np.unique(sem[visible]) if c != 17}
    expected = {c: 100.0 for c in present}
    expected[4] = 0.0
    expected[16] = 0.0
    expected[15] = 100.0 * manmade / (manmade + veg)
    assert r["miou"] == pytest.approx(np.mean(list(expected.values())))
    assert r["per_class_iou"]["manmade"] == pytest.approx(expected[15])
    assert r["geometric_iou"] == pytest.approx(100.0 * (occupied - cars) / occupied)


def test_metrics_cli(tmp_path, capsys, occ3d_sample):
    gt = np.array([[10.0, 20.0], [0.0, 40.0]], dtype=np.float32)
    np.save(tmp_path / "gt.npy", gt)
    np.save(tmp_path / "pred.npy", gt * 1.1)
    assert cli_main(["metrics", "depth", "--pred", str(tmp_path / "pred.npy"), "--gt", str(tmp_path / "gt.npy"),
                     "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["abs_rel"] == pytest.approx(0.1, rel=1e-5) and out["count"] == 3

    np.save(tmp_path / "bad.npy", np.zeros((3, 3)))
    assert cli_main(["metrics", "depth", "--pred", str(tmp_path / "bad.npy"), "--gt", str(tmp_path / "gt.npy")]) == 2
    assert "shape mismatch" in capsys.readouterr().err
    assert cli_main(["metrics", "depth", "--pred", str(tmp_path / "nope.npy"), "--gt", str(tmp_path / "gt.npy")]) == 2
    assert "no such file" in capsys.readouterr().err

    sem = np.load(occ3d_sample)["semantics"]
    np.savez(tmp_path / "pred.npz", semantics=sem)
    assert cli_main(["metrics", "occ3d", "--pred", str(tmp_path / "pred.npz"), "--gt", str(occ3d_sample),
                     "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["miou"] == pytest.approx(100.0) and out["use_mask"] is True
    np.save(tmp_path / "free.npy", np.full_like(sem, 17))
    assert cli_main(["metrics", "occ3d", "--pred", str(tmp_path / "free.npy"), "--gt", str(occ3d_sample),
                     "--no-mask"]) == 0
    assert "geometric IoU 0.00" in capsys.readouterr().out


def test_average_precision_against_hand_computed_values():
    from distillnerf.metrics import average_precision

    assert average_precision([0.9, 0.8, 0.1], [1, 1, 0]) == pytest.approx(1.0)
    # ranking: pos, neg, pos -> precisions 1 and 2/3
    assert average_precision([0.9, 0.5, 0.4], [1, 0, 1]) == pytest.approx((1.0 + 2.0 / 3.0) / 2)
    assert math.isnan(average_precision([0.3, 0.2], [0, 0]))
    with pytest.raises(ValueError, match="finite"):
        average_precision([float("nan"), 0.1], [1, 0])


def test_metrics_refuse_nonsense(tmp_path, capsys):
    gt = np.array([[10.0, 20.0], [0.0, 40.0]], dtype=np.float32)
    with pytest.raises(ValueError, match="non-finite"):
        depth_metrics(np.array([[np.nan, 20.0], [1.0, 40.0]]), gt)  # half NaN must not score AbsRel 0
    assert depth_metrics(np.array([[10.0, 20.0], [np.nan, 40.0]]), gt)["count"] == 3  # NaN where no ground truth
    with pytest.raises(ValueError, match="min_depth"):
        depth_metrics(gt, gt, min_depth=-5.0)
    np.save(tmp_path / "gt.npy", gt)
    half = gt.copy()
    half[0, 0] = np.nan
    np.save(tmp_path / "half.npy", half)
    np.save(tmp_path / "nan.npy", np.full_like(gt, np.nan))
    for pred in ("half.npy", "nan.npy"):
        assert cli_main(["metrics", "depth", "--pred", str(tmp_path / pred), "--gt", str(tmp_path / "gt.npy"),
                         "--json"]) == 2
        assert "non-finite" in capsys.readouterr().err
    assert cli_main(["metrics", "depth", "--pred", str(tmp_path / "gt.npy"), "--gt", str(tmp_path / "gt.npy"),
                     "--min-depth", "-5"]) == 2
    assert "min_depth" in capsys.readouterr().err
    np.save(tmp_path / "far.npy", np.full_like(gt, 200.0))
    assert cli_main(["metrics", "depth", "--pred", str(tmp_path / "gt.npy"), "--gt", str(tmp_path / "far.npy")]) == 2
    assert "nothing to score" in capsys.readouterr().err
    # Occ3D: float labels that are not whole numbers are refused; strict JSON (null, never NaN)
    labels = np.full((4, 4, 2), 17, np.uint8)
    labels[0, 0, 0] = 4
    np.savez(tmp_path / "gt.npz", semantics=labels, mask_camera=np.ones_like(labels))
    np.save(tmp_path / "float.npy", np.where(labels == 4, 3.7, 17.0))
    assert cli_main(["metrics", "occ3d", "--pred", str(tmp_path / "float.npy"), "--gt", str(tmp_path / "gt.npz")]) == 2
    assert "whole class numbers" in capsys.readouterr().err
    np.save(tmp_path / "free.npy", np.full_like(labels, 17))
    np.savez(tmp_path / "allfree.npz", semantics=np.full_like(labels, 17), mask_camera=np.ones_like(labels))
    assert cli_main(["metrics", "occ3d", "--pred", str(tmp_path / "free.npy"), "--gt", str(tmp_path / "allfree.npz"),
                     "--json"]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out and json.loads(out)["miou"] is None
