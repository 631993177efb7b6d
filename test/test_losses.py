"""Losses against hand-computed values; gradient routing of the distillation terms; the combined loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distillnerf_train.losses import (DistillNeRFLoss, LossConfig, VGGPerceptualLoss, backproject_depth,
                                      dense_depth_loss, density_distillation_loss, lidar_depth_loss, line_of_sight_loss,
                                      opacity_loss, ray_entropy_loss, rgb_l1_loss, sample_distillation_points)


def test_lidar_depth_loss_hand_computed():
    pred = torch.tensor([[[[10.0, 100.0, 5.0]]]])  # [B=1,N=1,h=1,w=3]
    target = torch.tensor([[[[20.0, 40.0, 0.0]]]])  # 0 = no LiDAR return
    # clamp to [1, 80], divide by 80: diffs -10/80 and 40/80
    d = torch.tensor([-10 / 80, 40 / 80])
    expected = (d ** 2).mean() + 0.1 * d.abs().mean()
    assert lidar_depth_loss(pred, target, 1.0, 80.0) == pytest.approx(float(expected))
    assert lidar_depth_loss(target, target, 1.0, 80.0) == 0.0
    # an invalid camera contributes nothing
    pred2 = torch.cat([pred, pred + 7], 1)
    target2 = torch.cat([target, target], 1)
    assert lidar_depth_loss(pred2, target2, 1.0, 80.0, torch.tensor([[True, False]])) == pytest.approx(float(expected))


def test_dense_depth_loss_near_far_normalisation():
    pred = torch.tensor([[[[30.0, 100.0, 3.0]]]])
    target = torch.tensor([[[[20.0, 115.0, 0.0]]]])  # near pixel / 50, sky (115) / 120, no data
    d = torch.tensor([10 / 50, -15 / 120])
    expected = (d ** 2).mean() + 0.1 * d.abs().mean()
    assert dense_depth_loss(pred, target, 50.0, 120.0) == pytest.approx(float(expected))


def test_log_depth_term_weighs_relative_error_evenly():
    target = torch.tensor([[[[5.0, 50.0]]]])
    pred = target * 1.2  # the same 20 % error near and far
    near, far = pred[..., :1], pred[..., 1:]
    log = [lidar_depth_loss(p, t, 1.0, 80.0, log_weight=1.0) - lidar_depth_loss(p, t, 1.0, 80.0)
           for p, t in ((near, target[..., :1]), (far, target[..., 1:]))]
    assert float(log[0]) == pytest.approx(float(log[1])) == pytest.approx(math.log(1.2), rel=1e-5)
    # while the official term sees the near error twenty times less
    assert float(lidar_depth_loss(near, target[..., :1], 1.0, 80.0)) < 0.06 * float(
        lidar_depth_loss(far, target[..., 1:], 1.0, 80.0))
    dense_extra = dense_depth_loss(pred, target, 50.0, 120.0, log_weight=0.5) - dense_depth_loss(
        pred, target, 50.0, 120.0)
    assert float(dense_extra) == pytest.approx(0.5 * math.log(1.2), rel=1e-5)
    assert lidar_depth_loss(target, target, 1.0, 80.0, log_weight=1.0) == 0.0
    assert LossConfig().depth_log_l1 == 0.0  # the official loss unless a config asks


def test_entropy_opacity_rgb():
    uniform = torch.full((4, 8), 0.1)
    assert ray_entropy_loss(uniform) == pytest.approx(math.log(8), rel=1e-5)
    peaked = torch.zeros(4, 8)
    peaked[:, 3] = 0.9
    assert ray_entropy_loss(peaked) == pytest.approx(0.0, abs=1e-5)
    assert opacity_loss(torch.full((10,), 0.5)) == pytest.approx(math.log(2), rel=1e-5)
    assert opacity_loss(torch.ones(10)) < 1e-4
    a, b = torch.zeros(1, 2, 3, 4, 4), torch.full((1, 2, 3, 4, 4), 0.25)
    assert rgb_l1_loss(a, b) == pytest.approx(0.25)
    b[:, 1] = 1.0
    assert rgb_l1_loss(a, b, torch.tensor([[True, False]])) == pytest.approx(0.25)


def test_density_distillation_stops_teacher_gradient():
    student = torch.tensor([0.0, 1.0, 5.0], requires_grad=True)
    teacher = torch.tensor([2.0, 1.0, 0.0], requires_grad=True)
    loss = density_distillation_loss(student, teacher, step=0.4)
    o_s, o_t = 1 - torch.exp(-student.detach() * 0.4), 1 - torch.exp(-teacher.detach() * 0.4)
    assert float(loss.detach()) == pytest.approx(float(((o_s - o_t) ** 2).mean()))
    loss.backward()
    assert teacher.grad is None and student.grad is not None and student.grad[0] < 0  # pushed up towards teacher


def test_backprojection_and_distillation_points():
    k = torch.tensor([[20.0, 0, 8], [0, 20.0, 4], [0, 0, 1]]).expand(1, 2, 3, 3)
    pose = torch.eye(4).repeat(1, 2, 1, 1)
    pose[0, 1, :3, 3] = torch.tensor([1.0, 2.0, 3.0])
    depth = torch.full((1, 2, 8, 16), 10.0)
    points = backproject_depth(depth, k, pose)
    assert points.shape == (1, 2 * 8 * 16, 3)
    # pixel (u=0.5, v=0.5) of camera 0 at z = 10: x = (0.5 - 8) / 20 * 10
    assert torch.allclose(points[0, 0], torch.tensor([-3.75, -1.75, 10.0]))
    assert torch.allclose(points[0, 128], torch.tensor([-3.75 + 1, -1.75 + 2, 13.0]))
    samples = sample_distillation_points(depth, k, pose, 100, torch.Generator().manual_seed(0))
    assert samples.shape == (1, 100, 3)
    uniform = samples[0, 50:]
    assert (uniform[:, 0].abs() <= 40).all() and (uniform[:, 2] >= -1).all() and (uniform[:, 2] <= 5.4).all()
    assert (samples[0, :50, 2] > 8).all()  # near the 10 m surfaces


def _fake_out_and_batch(n: int = 2):
    out = {"rgb": torch.full((1, n, 3, 8, 8), 0.5, requires_grad=True),
           "depth": torch.full((1, n, 4, 4), 10.0, requires_grad=True),
           "coarse_depth": torch.full((1, n, 8, 8), 12.0, requires_grad=True),
           "opacity": torch.full((1, n, 4, 4), 0.9), "weights": torch.full((1, n, 4, 4, 5), 0.2)}
    batch = {"images": torch.zeros(1, n, 3, 8, 8), "camera_valid": torch.ones(1, n, dtype=torch.bool),
             "lidar_depth": torch.full((1, n, 4, 4), 20.0), "dense_depth": torch.zeros(1, n, 4, 4),
             "dense_depth_valid": torch.zeros(1, n, dtype=torch.bool)}
    return out, batch


def test_combined_loss_terms_and_skips():
    out, batch = _fake_out_and_batch()
    loss = DistillNeRFLoss(LossConfig())
    total, terms = loss(out, batch)
    assert set(terms) == {"rgb_l1", "lidar_depth", "lidar_coarse_depth", "entropy", "opacity"}  # no dense targets
    assert terms["rgb_l1"] == pytest.approx(0.5)
    d = 10 / 80
    assert terms["lidar_depth"] == pytest.approx(10 * (d ** 2 + 0.1 * d))
    assert float(total.detach()) == pytest.approx(sum(terms.values()), rel=1e-6)
    total.backward()
    assert out["depth"].grad is not None and out["coarse_depth"].grad is not None
    batch["dense_depth"][:, 0] = 115.0
    batch["dense_depth_valid"][:, 0] = True
    _, terms = loss(out, batch)
    assert terms["dense_depth"] == pytest.approx(10 * ((105 / 120) ** 2 + 0.1 * 105 / 120), rel=1e-5)
    off = LossConfig(**{k: 0.0 for k in ("rgb_l1", "lidar_depth", "lidar_coarse_depth", "dense_depth", "entropy",
                                         "opacity")})
    with pytest.raises(ValueError, match="nothing to train"):
        DistillNeRFLoss(off)(out, batch)
    with pytest.raises(ValueError, match="unknown key"):
        LossConfig.from_dict({"rgb_l2": 1.0})


def test_line_of_sight_counts_the_weight_in_front_of_the_surface():
    # one camera, 3x3 pixels on a wall at 10 m; 4 samples per ray at 2, 8.5, 9.5 and 10 m
    target = torch.full((1, 1, 3, 3), 10.0)
    z = torch.tensor([2.0, 8.5, 9.5, 10.0]).expand(1, 1, 3, 3, 4).clone()
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4]).expand(1, 1, 3, 3, 4).clone().requires_grad_(True)
    valid = torch.ones(1, 1, 3, 3, dtype=torch.bool)
    # margin 1 m: samples nearer than 9 m are in front (0.1 + 0.2)
    loss = line_of_sight_loss(weights, z, target, valid, 1.0)
    assert float(loss) == pytest.approx(0.3)
    loss.backward()
    assert torch.equal(weights.grad[0, 0, 0, 0] > 0, torch.tensor([True, True, False, False]))
    # a wider margin forgives more; all weight on the surface costs nothing
    assert float(line_of_sight_loss(weights, z, target, valid, 2.0)) == pytest.approx(0.1)
    on_surface = torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(1, 1, 3, 3, 4)
    assert float(line_of_sight_loss(on_surface, z, target, valid, 1.0)) == 0.0
    # a grazing surface (depth grows 4 m a row, the road far ahead) widens the margin to the 3x3 depth range
    road = torch.tensor([10.0, 14.0, 18.0]).view(1, 1, 3, 1).expand(1, 1, 3, 3).clone()
    centre = torch.zeros(1, 1, 3, 3, dtype=torch.bool)
    centre[0, 0, 1, 1] = True
    z_road = torch.tensor([2.0, 8.5, 11.0, 14.0]).expand(1, 1, 3, 3, 4)
    # centre target 14 m, range 8 m: only the sample at 2 m is in front (the one at 11 m lies in the road's layer)
    assert float(line_of_sight_loss(weights.detach(), z_road, road, centre, 1.0)) == pytest.approx(0.1)
    # pixels without a target (0) are skipped, and do not widen their neighbours' margin
    holes = target.clone()
    holes[0, 0, 0] = 0.0
    assert float(line_of_sight_loss(weights.detach(), z, holes, valid, 1.0)) == pytest.approx(0.3)


def test_line_of_sight_term_reads_dense_depth_then_lidar():
    out, batch = _fake_out_and_batch()
    s = 4
    b, n, h, w = out["depth"].shape
    out["sample_depths"] = torch.linspace(1.0, 40.0, s).expand(b, n, h, w, s).clone()
    out["weights"] = torch.full((b, n, h, w, s), 0.25)
    loss = DistillNeRFLoss(LossConfig(line_of_sight=2.0, line_of_sight_margin=1.0))
    _, terms = loss(out, batch)
    lidar = batch["lidar_depth"]
    ok = (lidar >= 1.0) & (lidar <= 80.0)
    expected = line_of_sight_loss(out["weights"], out["sample_depths"], torch.where(ok, lidar, 0 * lidar),
                                  torch.ones_like(ok), 1.0)
    assert terms["line_of_sight"] == pytest.approx(2.0 * float(expected))
    batch["dense_depth"][:, 0] = 30.0
    batch["dense_depth_valid"][:, 0] = True
    _, terms = loss(out, batch)
    # camera 0 now reads its dense depth (30 m: samples at 1, 14 and 27 m are in front), the others their LiDAR
    target = torch.where(ok, lidar, 0 * lidar)
    target[:, 0] = 30.0
    expected = line_of_sight_loss(out["weights"], out["sample_depths"], target, torch.ones_like(ok), 1.0)
    assert terms["line_of_sight"] == pytest.approx(2.0 * float(expected))
    assert "line_of_sight" not in DistillNeRFLoss(LossConfig())(out, batch)[1]  # off unless a config asks


def test_lpips_needs_local_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="VGG16"):
        VGGPerceptualLoss(str(tmp_path / "vgg16.pth"))
    with pytest.raises(FileNotFoundError):
        DistillNeRFLoss(LossConfig(rgb_lpips=1.0, lpips_vgg_weights=str(tmp_path / "none.pth")))


def test_train_step_with_model_dropout_and_distillation():
    """The real tiny model: camera dropout never drops every camera, KDBTS and coordinate terms get gradients."""
    from distillnerf.config import load_model_config
    from distillnerf.model import DistillNeRF
    from distillnerf_train.train_step import TrainStep

    torch.manual_seed(0)
    config = load_model_config("tiny", coordinate_head=True)
    model = DistillNeRF(config)
    losses = LossConfig(density_distill=1.0, density_points=256, camera_dropout=1.0, camera_dropout_max=5,
                        coordinate=1.0)
    step = TrainStep(model, DistillNeRFLoss(losses), render_virtual=True).train()
    valid = torch.tensor([[True, True, False, True, True, True]])
    for _ in range(10):
        dropped = step._dropout(valid)
        assert dropped.sum() >= 1 and not (dropped & ~valid).any() and dropped.sum() < valid.sum()
    n, (w, h), (rw, rh) = 6, config.input_size, config.render_size
    k = torch.tensor([[w / 2, 0, w / 2], [0, w / 2, h / 2], [0, 0, 1.0]]).expand(1, n, 3, 3)
    from distillnerf.rig import load_rig

    rig = load_rig("nuscenes")
    poses = torch.from_numpy(np.stack([c.cam_to_ego for c in rig.cameras])).float()[None]
    virtual = poses[:, :, None].repeat(1, 1, 3, 1, 1)
    virtual[..., 0, 3] += 1.0
    batch = {"images": torch.rand(1, n, 3, h, w), "intrinsics": k, "cam_to_ego": poses, "camera_valid": valid,
             "lidar_depth": torch.full((1, n, rh, rw), 15.0), "dense_depth": torch.zeros(1, n, rh, rw),
             "dense_depth_valid": torch.zeros(1, n, dtype=torch.bool), "virtual_valid": torch.ones(1, n, 3).bool(),
             "virtual_rgb": torch.rand(1, n, 3, 3, h, w), "virtual_depth": torch.full((1, n, 3, rh, rw), 15.0),
             "virtual_cam_to_ego": virtual}
    total, terms, out = step(batch)
    assert {"density_distill", "coordinate", "virtual_rgb", "virtual_depth"} <= set(terms)
    total.backward()
    grads = [p.grad for p in model.decoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # with no camera dropped there is nothing to distil: no teacher pass, no term
    step.loss.config.camera_dropout = 0.0
    assert "density_distill" not in step(batch)[1]


def test_feature_contrast_is_class_balanced_and_prefers_the_right_prototype():
    from distillnerf_train.semantic_losses import feature_contrast_loss

    prototypes = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # 30 pixels of class 0 (the 'road'), 2 of class 2; targets equal their prototypes
    target = torch.cat([prototypes[0].expand(30, 2), prototypes[2].expand(2, 2)])
    target = target.T.reshape(1, 1, 2, 4, 8)
    valid = torch.ones(1, 1, 4, 8, dtype=torch.bool)
    right = feature_contrast_loss(target.clone(), target, valid, prototypes, 0.05)
    wrong_rare = target.clone().reshape(1, 1, 2, 32)
    wrong_rare[..., 30:] = prototypes[1][:, None]  # the two rare pixels rendered as class 1
    wrong = feature_contrast_loss(wrong_rare.reshape(1, 1, 2, 4, 8), target, valid, prototypes, 0.05)
    assert float(right) < 1e-3
    # balanced: the 2 wrong pixels of 32 weigh as one class of two, not 1/16 of the pixels
    assert float(wrong) > 0.4 * float(F.cross_entropy(torch.tensor([[-2.0 / 0.05, -0.0, -1.0 / 0.05]]),
                                                        torch.tensor([2])))
    with pytest.raises(ValueError, match="class prototypes"):
        DistillNeRFLoss(LossConfig(feature_contrast=1.0))
    loss = DistillNeRFLoss(LossConfig(feature_contrast=1.0), prototypes)
    out = {"features": target.clone().requires_grad_(True), "depth": torch.ones(1, 1, 4, 8)}
    batch = {"features": target, "features_valid": torch.ones(1, 1, dtype=torch.bool),
             "camera_valid": torch.ones(1, 1, dtype=torch.bool), "images": torch.zeros(1, 1, 3, 8, 16)}
    _, terms = DistillNeRFLoss(LossConfig(rgb_l1=0.0, feature_contrast=1.0, features=0.0, lidar_depth=0.0,
                                          lidar_coarse_depth=0.0, dense_depth=0.0, entropy=0.0, opacity=0.0),
                               prototypes)(out, batch)
    assert set(terms) == {"feature_contrast"} and terms["feature_contrast"] < 1e-3
    assert loss.class_prototypes.shape == (3, 2)


def test_class_balanced_depth_weighs_a_rare_class_as_much_as_the_road():
    from distillnerf_train.losses import class_balanced_log_depth_loss

    prototypes = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    # 30 road pixels (class 0) with exact depth, 2 car pixels (class 1) 20 % too far
    target_features = torch.cat([prototypes[0].expand(30, 2), prototypes[1].expand(2, 2)]).T.reshape(1, 1, 2, 4, 8)
    target = torch.full((1, 1, 4, 8), 10.0)
    pred = target.clone().reshape(1, 1, 32)
    pred[..., 30:] = 12.0
    pred = pred.reshape(1, 1, 4, 8)
    valid = torch.ones(1, 1, 4, 8, dtype=torch.bool)
    from distillnerf_train.semantic_losses import pixel_classes

    classes = pixel_classes(target_features, prototypes)
    assert classes.reshape(-1).tolist() == [0] * 30 + [1] * 2
    balanced = class_balanced_log_depth_loss(pred, target, valid, classes, 2, 1.0, 80.0)
    # the mean of the two classes' errors (0 and log 1.2), not the pixel mean (2/32 of log 1.2)
    assert float(balanced) == pytest.approx(0.5 * math.log(1.2), rel=1e-5)
    # beyond the range (sky at 115 m) a pixel does not count
    far = target.clone().reshape(1, 1, 32)
    far[..., 30:] = 115.0
    assert float(class_balanced_log_depth_loss(pred, far.reshape(1, 1, 4, 8), valid, classes, 2, 1.0, 80.0)) == 0.0
    # in the loss: the rendered and the stage-1 depth, cameras with both targets; gradients reach both
    with pytest.raises(ValueError, match="class prototypes"):
        DistillNeRFLoss(LossConfig(depth_class_balance=1.0))
    depth = pred.clone().requires_grad_(True)
    coarse = torch.full((1, 1, 8, 16), 10.0, requires_grad=True)  # the input size, pooled to the target's
    out = {"depth": depth, "coarse_depth": coarse}
    batch = {"dense_depth": target, "dense_depth_valid": torch.ones(1, 1, dtype=torch.bool),
             "features": target_features, "features_valid": torch.ones(1, 1, dtype=torch.bool),
             "camera_valid": torch.ones(1, 1, dtype=torch.bool)}
    total, terms = DistillNeRFLoss(LossConfig(rgb_l1=0.0, features=0.0, lidar_depth=0.0, lidar_coarse_depth=0.0,
                                              dense_depth=0.0, entropy=0.0, opacity=0.0, depth_class_balance=2.0),
                                   prototypes)(out, batch)
    assert set(terms) == {"depth_class_balance"}
    assert terms["depth_class_balance"] == pytest.approx(2.0 * 0.5 * math.log(1.2), rel=1e-5)
    total.backward()
    assert depth.grad[0, 0].reshape(-1)[30:].abs().min() > 0 and coarse.grad is not None
    batch["features_valid"] = torch.zeros(1, 1, dtype=torch.bool)  # no feature target: no class, no term
    with pytest.raises(ValueError, match="nothing to train on"):
        DistillNeRFLoss(LossConfig(rgb_l1=0.0, features=0.0, lidar_depth=0.0, lidar_coarse_depth=0.0, dense_depth=0.0,
                                   entropy=0.0, opacity=0.0, depth_class_balance=1.0), prototypes)(out, batch)


def test_voxel_contrast_asks_each_contributing_voxel_for_its_class():
    from distillnerf_train.semantic_losses import voxel_contrast_loss

    prototypes = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    target = torch.zeros(1, 1, 2, 1, 2)  # two pixels (rays): class 0 and class 1
    target[0, 0, :, 0, 1] = prototypes[1]
    valid = torch.ones(1, 1, 1, 2, dtype=torch.bool)
    # ray 0 has two samples (rows 0 and 1), ray 1 one sample (row 2)
    samples = {"ray": torch.tensor([0, 0, 1]), "row": torch.tensor([0, 1, 2]), "weight": torch.tensor([0.5, 0.5, 1.0])}
    right = torch.stack([prototypes[0], prototypes[0], prototypes[1]]).requires_grad_(True)
    assert float(voxel_contrast_loss(samples, right, target, valid, prototypes, 0.05, 8)) < 1e-3
    # the sum of ray 0's two voxels is right (their mean is prototype 0 ... only if both are): make one wrong
    wrong = torch.stack([prototypes[1], prototypes[0] - (prototypes[1] - prototypes[0]), prototypes[1]])
    assert float(voxel_contrast_loss(samples, wrong, target, valid, prototypes, 0.05, 8)) > 1.0
    loss = voxel_contrast_loss(samples, right * 0.5 + 0.2, target, valid, prototypes, 0.25, 8)
    loss.backward()
    assert right.grad is not None and float(right.grad.abs().sum()) > 0
