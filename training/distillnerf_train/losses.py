"""DistillNeRF's training losses, each a small function; weights and ranges come from the ``losses:`` config.

Conventions: predicted and target depths are camera z in metres, targets use 0 for "no data"; image tensors are
``[B,N,3,H,W]`` in [0, 1]; per-camera validity masks ``[B,N]`` exclude cameras missing from the data and, in
camera-dropout steps, the dropped cameras (only the 3D density distillation speaks about what they saw).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F

from distillnerf.dataclass_config import dataclass_from_dict
from distillnerf.metrics import ssim_map

from .masking import camera_mask, masked_mean
from .semantic_losses import (class_balanced_mean, feature_contrast_loss, feature_l1_loss, pixel_classes,
                              voxel_contrast_loss)


@dataclass
class LossConfig:
    """Loss weights (0 disables a term) and ranges; defaults are the official code's."""

    rgb_l1: float = 1.0
    rgb_ssim: float = 0.0
    rgb_lpips: float = 0.0  # needs lpips_vgg_weights (a local torchvision VGG16 state dict)
    lpips_vgg_weights: str = ""
    lidar_depth: float = 10.0
    lidar_coarse_depth: float = 10.0  # the same loss on stage-1 depth
    lidar_min_depth: float = 1.0
    lidar_max_depth: float = 80.0
    dense_depth: float = 10.0  # teacher (offline NeRF) or exact dense depth, sky = sky depth
    dense_near_range: float = 50.0
    dense_far_range: float = 120.0
    virtual_rgb: float = 1.0
    virtual_depth: float = 1.0
    features: float = 1.0
    # Not in the paper: the rendered feature must be nearer its pixel's class prototype (the reduced text embedding
    # of the class prompt, from the features' reducer.pt) than any other class's: cross-entropy over negative
    # squared distances / temperature, averaged per class so road and buildings do not drown the rest. The L1
    # term alone regresses every pixel towards the average of prototypes that lie close together after PCA.
    feature_contrast: float = 0.0
    feature_temperature: float = 0.05
    # The same cross-entropy on every contributing sample's own voxel feature (weighted by its rendering weight),
    # not only on their weighted sum: the 3D descriptors that semantic occupancy and queries read must be right
    # one by one, which the rendered sum alone does not ask. ``voxel_contrast_rays`` rays per step (random).
    voxel_contrast: float = 0.0
    voxel_contrast_rays: int = 4096
    entropy: float = 0.01
    opacity: float = 0.1
    density_distill: float = 0.0  # KDBTS: student density at 3D points matches the all-camera teacher's
    density_points: int = 4096
    density_step: float = 0.4  # metres: density -> occupancy 1 - exp(-sigma * step) before comparing
    camera_dropout: float = 0.0  # probability of dropping cameras for the student in a density-distill step
    camera_dropout_max: int = 2  # at most this many cameras dropped
    coordinate: float = 0.0  # FeatureNeRF coordinate regression (needs the model's coordinate head)
    # Not in the paper: L1 on log depth, added inside every depth term (LiDAR, stage 1, dense, virtual) with this
    # weight. The official range-normalised MSE barely sees a 1 m error at 5 m; the log term weighs relative error
    # evenly at every range, which is what AbsRel measures and what a short schedule needs to learn near geometry.
    depth_log_l1: float = 0.0
    # Not in the paper: L1 of log depth against the dense depth, averaged per class (each pixel's class is the
    # prototype nearest its feature target, as for feature_contrast), on the rendered and the stage-1 depth. Road
    # and buildings fill most pixels and are where the depth is good (AbsRel 0.04 on road); cars, buses and
    # pedestrians are near, small and 4-10x worse (car 0.18), and their voxels are where occupancy and semantics fail.
    depth_class_balance: float = 0.0
    # Not in the paper (Urban Radiance Fields' line-of-sight idea): the rendering weight a ray spends more than a
    # margin in front of its dense-depth surface (teacher or exact; LiDAR where a camera has none), i.e. the
    # opacity 1 - T(D - margin) gathered before the surface. The depth terms score only the expected depth, so a
    # field may keep a fog of density in front of every surface at no cost, and that fog is false occupancy. The
    # margin is at least ``line_of_sight_margin`` metres and widens to the depth range of the pixel's 3x3
    # neighbourhood, so a surface seen at a grazing angle (the road far ahead) keeps the voxel layer it lies in.
    line_of_sight: float = 0.0
    line_of_sight_margin: float = 1.0

    @classmethod
    def from_dict(cls, data: dict | None) -> "LossConfig":
        config = dataclass_from_dict(cls, data, "losses config")
        negative = [f.name for f in fields(cls) if isinstance(getattr(config, f.name), (int, float))
                    and not isinstance(getattr(config, f.name), bool) and getattr(config, f.name) < 0]
        if negative:
            raise ValueError(f"losses config: {', '.join(negative)} must not be negative")
        if config.feature_temperature <= 0 or config.density_step <= 0:
            raise ValueError("losses config: feature_temperature and density_step must be positive")
        return config


def rgb_l1_loss(pred: torch.Tensor, target: torch.Tensor, camera_valid: torch.Tensor | None = None) -> torch.Tensor:
    return masked_mean((pred - target).abs(), camera_mask(camera_valid, pred))


def rgb_ssim_loss(pred: torch.Tensor, target: torch.Tensor, camera_valid: torch.Tensor | None = None) -> torch.Tensor:
    """1 - SSIM, averaged over valid cameras."""
    b, n = pred.shape[:2]
    per_image = 1.0 - ssim_map(pred.flatten(0, 1).float(), target.flatten(0, 1).float()).mean(dim=(1, 2, 3))
    return masked_mean(per_image.view(b, n), camera_mask(camera_valid, per_image.view(b, n)))


def log_depth_l1(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, min_depth: float,
                 max_depth: float) -> torch.Tensor:
    """Mean |log pred - log target| over ``valid`` pixels, both clamped to [min_depth, max_depth]."""
    diff = torch.log(pred.clamp(min_depth, max_depth)) - torch.log(target.clamp(min_depth, max_depth))
    return masked_mean(diff.abs(), valid)


def lidar_depth_loss(pred: torch.Tensor, target: torch.Tensor, min_depth: float, max_depth: float,
                     camera_valid: torch.Tensor | None = None, log_weight: float = 0.0) -> torch.Tensor:
    """The official LiDAR loss: clamp to the range, divide by the range, MSE + 0.1 * L1 over pixels with data;
    plus ``log_weight`` * L1 on log depth."""
    valid = (target >= min_depth) & (target <= max_depth) & camera_mask(camera_valid, target)
    p = pred.clamp(min_depth, max_depth) / max_depth
    t = target.clamp(min_depth, max_depth) / max_depth
    diff = p - t
    loss = masked_mean(diff ** 2, valid) + 0.1 * masked_mean(diff.abs(), valid)
    if log_weight > 0:
        loss = loss + log_weight * log_depth_l1(pred, target, valid, min_depth, max_depth)
    return loss


def dense_depth_loss(pred: torch.Tensor, target: torch.Tensor, near_range: float, far_range: float,
                     camera_valid: torch.Tensor | None = None, log_weight: float = 0.0,
                     min_depth: float = 0.1) -> torch.Tensor:
    """Dense (teacher / exact) depth: pixels nearer than ``near_range`` are normalised by it, the rest (including
    sky at 115 m) by ``far_range``, so near geometry is not drowned by far errors. MSE + 0.1 * L1, plus
    ``log_weight`` * L1 on log depth."""
    valid = (target > 0) & camera_mask(camera_valid, target)
    scale = torch.where(target < near_range, torch.full_like(target, near_range), torch.full_like(target, far_range))
    diff = (pred.clamp(0.0, far_range) - target.clamp(0.0, far_range)) / scale
    loss = masked_mean(diff ** 2, valid) + 0.1 * masked_mean(diff.abs(), valid)
    if log_weight > 0:
        loss = loss + log_weight * log_depth_l1(pred, target, valid, min_depth, far_range)
    return loss


def class_balanced_log_depth_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                                  classes: torch.Tensor, num_classes: int, min_depth: float,
                                  max_depth: float) -> torch.Tensor:
    """Mean over the classes present of each class's mean |log pred - log target| over ``valid`` pixels with a
    target in [min_depth, max_depth]; ``classes`` [B,N,h,w] each pixel's class index (< ``num_classes``)."""
    ok = valid & (target >= min_depth) & (target <= max_depth)
    if not bool(ok.any()):
        return pred.new_zeros(())
    diff = (torch.log(pred[ok].float().clamp(min_depth, max_depth)) - torch.log(target[ok].float())).abs()
    labels = classes[ok]
    return class_balanced_mean(diff, labels, labels, num_classes)


def line_of_sight_loss(weights: torch.Tensor, sample_depths: torch.Tensor, target: torch.Tensor,
                       valid: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over ``valid`` pixels of the weight in front of the target surface: samples nearer than
    ``target - max(margin, local depth range)``. ``weights`` and ``sample_depths`` (camera z) are [B,N,h,w,S],
    ``target`` [B,N,h,w] camera z (0 = none), ``valid`` [B,N,h,w]."""
    flat = target.flatten(0, 1)[:, None]
    known = flat > 0
    # 3x3 range over pixels with a target only (a missing neighbour is not a depth edge)
    high = F.max_pool2d(torch.where(known, flat, torch.full_like(flat, -1e9)), 3, 1, 1)
    low = -F.max_pool2d(torch.where(known, -flat, torch.full_like(flat, -1e9)), 3, 1, 1)
    spread = (high - low).clamp_min(0.0)[:, 0].view_as(target)
    front = target - torch.clamp(spread, min=margin)
    mass = (weights * (sample_depths < front[..., None])).sum(-1)
    return masked_mean(mass, valid & (target > 0))


def ray_entropy_loss(weights: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Entropy of the normalised ray weights ``[..., S]``: low entropy = one sharp surface per ray."""
    p = weights / weights.sum(-1, keepdim=True).clamp_min(eps)
    return -(p * torch.log(p + eps)).sum(-1).mean()


def opacity_loss(opacity: torch.Tensor) -> torch.Tensor:
    """BCE of the accumulated opacity towards 1 (= -log p): in a street scene every ray ends on a surface or the
    sky. Written out because ``F.binary_cross_entropy`` refuses to run under CUDA autocast."""
    return -torch.log(opacity.float().clamp(1e-5, 1.0)).mean()


def density_distillation_loss(student_density: torch.Tensor, teacher_density: torch.Tensor,
                              step: float) -> torch.Tensor:
    """KDBTS 3D distillation: match occupancy 1 - exp(-sigma * step) at shared points; the teacher is a fixed
    target (stop-gradient), so only the student learns to infer geometry it cannot see."""
    student = 1.0 - torch.exp(-student_density.float() * step)
    teacher = 1.0 - torch.exp(-teacher_density.detach().float() * step)
    return F.mse_loss(student, teacher)


def coordinate_loss(pred_xyz: torch.Tensor, target_xyz: torch.Tensor) -> torch.Tensor:
    """FeatureNeRF cycle: the 3D descriptor must encode where it is (L1 on regressed coordinates)."""
    return (pred_xyz - target_xyz.detach()).abs().mean()


def backproject_depth(depth: torch.Tensor, intrinsics: torch.Tensor, cam_to_ego: torch.Tensor) -> torch.Tensor:
    """Ego-frame points ``[B, N*h*w, 3]`` of camera-z depth images ``[B,N,h,w]`` (pixel centres)."""
    b, n, h, w = depth.shape
    v, u = torch.meshgrid(torch.arange(h, device=depth.device, dtype=depth.dtype) + 0.5,
                          torch.arange(w, device=depth.device, dtype=depth.dtype) + 0.5, indexing="ij")
    pixels = torch.stack([u, v, torch.ones_like(u)], -1).reshape(1, 1, -1, 3)
    rays = pixels @ torch.linalg.inv(intrinsics.to(depth.dtype)).transpose(-1, -2)  # z = 1
    points_cam = rays * depth.reshape(b, n, -1, 1)
    rotation, translation = cam_to_ego[..., :3, :3].to(depth.dtype), cam_to_ego[..., :3, 3].to(depth.dtype)
    return (points_cam @ rotation.transpose(-1, -2) + translation[:, :, None]).reshape(b, -1, 3)


def sample_distillation_points(teacher_depth: torch.Tensor, intrinsics: torch.Tensor, cam_to_ego: torch.Tensor,
                               count: int, generator: torch.Generator | None = None,
                               bounds: tuple[tuple[float, float], ...] = ((-40, 40), (-40, 40), (-1, 5.4))
                               ) -> torch.Tensor:
    """Half the points near the teacher's surfaces (where occupancy changes), half uniform in the Occ3D box."""
    b = teacher_depth.shape[0]
    device = teacher_depth.device
    surface = backproject_depth(teacher_depth.detach(), intrinsics, cam_to_ego)
    half = count // 2
    index = torch.randint(0, surface.shape[1], (b, half), generator=generator).to(device)
    near = torch.gather(surface, 1, index[..., None].expand(-1, -1, 3))
    near = near + 0.2 * torch.randn(near.shape, generator=generator).to(device, near.dtype)
    low = torch.tensor([lo for lo, _ in bounds], dtype=near.dtype, device=device)
    high = torch.tensor([hi for _, hi in bounds], dtype=near.dtype, device=device)
    uniform = low + (high - low) * torch.rand(b, count - half, 3, generator=generator).to(device, near.dtype)
    return torch.cat([near, uniform], 1)


class VGGPerceptualLoss(torch.nn.Module):
    """LPIPS-style distance on VGG16 features (unit-normalised channels, equal layer weights).

    Built only from a local torchvision VGG16 weights file: without real weights a perceptual loss is noise.
    """

    LAYERS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3

    def __init__(self, weights_path: str) -> None:
        super().__init__()
        from torchvision.models import vgg16

        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"LPIPS needs local VGG16 weights; no file at {path}")
        model = vgg16()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.features = model.features[: self.LAYERS[-1] + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = (pred.flatten(0, -4) - self.mean) / self.std
        y = (target.flatten(0, -4) - self.mean) / self.std
        total = x.new_zeros(())
        for i, layer in enumerate(self.features):
            x, y = layer(x), layer(y)
            if i in self.LAYERS:
                nx = x / (x.norm(dim=1, keepdim=True) + 1e-10)
                ny = y / (y.norm(dim=1, keepdim=True) + 1e-10)
                total = total + ((nx - ny) ** 2).sum(1).mean()
        return total


class DistillNeRFLoss(torch.nn.Module):
    """All weighted terms for one batch: ``loss(out, batch) -> (total, {term: value})``.

    ``out`` is the model's output dict; ``batch`` the loader's dict. Terms whose targets are absent from the
    batch (no teacher, no features) are skipped rather than fed zeros. ``extra`` carries outputs computed
    outside the main forward pass (virtual-view renders, distillation densities, coordinates).
    """

    def __init__(self, config: LossConfig, class_prototypes: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = config
        self.perceptual = VGGPerceptualLoss(config.lpips_vgg_weights) if config.rgb_lpips > 0 else None
        needing = [name for name in ("feature_contrast", "voxel_contrast", "depth_class_balance")
                   if getattr(config, name) > 0]
        if needing and class_prototypes is None:
            raise ValueError(f"losses.{needing[0]} needs class prototypes: the features' reducer.pt must carry "
                             "'class_targets' (written by distillnerf features)")
        self.register_buffer("class_prototypes", None if class_prototypes is None else
                             torch.as_tensor(class_prototypes, dtype=torch.float32), persistent=False)

    def _class_balanced_depth(self, out: dict, batch: dict, valid) -> torch.Tensor | None:
        """The class-balanced log-depth term on the rendered and the stage-1 depth, over cameras with both a dense
        depth and a feature target (the pixel's class); None when no camera has both."""
        if "dense_depth" not in batch or "features" not in batch:
            return None
        cameras = batch["dense_depth_valid"] & batch["features_valid"]
        if not bool(cameras.any()):
            return None
        target = batch["dense_depth"]
        mask = camera_mask(cameras & (valid if valid is not None else True), target)
        classes = pixel_classes(batch["features"], self.class_prototypes)
        depths = [out["depth"]]
        if "coarse_depth" in out:  # the stage-1 depth places the lifted density: area-pooled to the target's size
            depths.append(F.interpolate(out["coarse_depth"].flatten(0, 1)[:, None], mode="area",
                                        size=target.shape[-2:])[:, 0].view_as(target))
        cfg = self.config
        return sum(class_balanced_log_depth_loss(d, target, mask, classes, self.class_prototypes.shape[0],
                                                 cfg.lidar_min_depth, cfg.lidar_max_depth) for d in depths)

    def _surface_target(self, batch: dict, valid: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Per-pixel surface depth and validity for the line-of-sight term: the dense depth for cameras that have
        one, the LiDAR (within its range) for the others; None without either."""
        cfg = self.config
        depth, known = None, None
        if "lidar_depth" in batch:
            lidar = batch["lidar_depth"]
            depth = torch.where((lidar >= cfg.lidar_min_depth) & (lidar <= cfg.lidar_max_depth), lidar,
                                torch.zeros_like(lidar))
        if "dense_depth" in batch and bool(batch["dense_depth_valid"].any()):
            dense = batch["dense_depth_valid"][..., None, None]
            depth = torch.where(dense, batch["dense_depth"], depth if depth is not None else
                                torch.zeros_like(batch["dense_depth"]))
        if depth is None:
            return None
        known = camera_mask(valid, depth) & (depth > 0)
        return depth, known

    def forward(self, out: dict, batch: dict, extra: dict | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        cfg, extra = self.config, extra or {}
        valid = batch.get("camera_valid")
        terms: dict[str, torch.Tensor] = {}
        if cfg.rgb_l1 > 0:
            terms["rgb_l1"] = cfg.rgb_l1 * rgb_l1_loss(out["rgb"], batch["images"], valid)
        if cfg.rgb_ssim > 0:
            terms["rgb_ssim"] = cfg.rgb_ssim * rgb_ssim_loss(out["rgb"], batch["images"], valid)
        if self.perceptual is not None:
            keep = valid.flatten() if valid is not None else slice(None)
            terms["rgb_lpips"] = cfg.rgb_lpips * self.perceptual(out["rgb"].flatten(0, 1)[keep],
                                                                 batch["images"].flatten(0, 1)[keep])
        if cfg.lidar_depth > 0 and "lidar_depth" in batch:
            terms["lidar_depth"] = cfg.lidar_depth * lidar_depth_loss(
                out["depth"], batch["lidar_depth"], cfg.lidar_min_depth, cfg.lidar_max_depth, valid, cfg.depth_log_l1)
        if cfg.lidar_coarse_depth > 0 and "lidar_depth" in batch and "coarse_depth" in out:
            coarse = F.interpolate(out["coarse_depth"].flatten(0, 1)[:, None], size=batch["lidar_depth"].shape[-2:],
                                   mode="area")[:, 0].view_as(batch["lidar_depth"])
            terms["lidar_coarse_depth"] = cfg.lidar_coarse_depth * lidar_depth_loss(
                coarse, batch["lidar_depth"], cfg.lidar_min_depth, cfg.lidar_max_depth, valid, cfg.depth_log_l1)
        if cfg.dense_depth > 0 and "dense_depth" in batch and bool(batch["dense_depth_valid"].any()):
            mask = batch["dense_depth_valid"] & (valid if valid is not None else True)
            terms["dense_depth"] = cfg.dense_depth * dense_depth_loss(
                out["depth"], batch["dense_depth"], cfg.dense_near_range, cfg.dense_far_range, mask, cfg.depth_log_l1)
        if cfg.depth_class_balance > 0:
            term = self._class_balanced_depth(out, batch, valid)
            if term is not None:
                terms["depth_class_balance"] = cfg.depth_class_balance * term
        if "virtual" in extra:
            v_valid = batch["virtual_valid"]
            if cfg.virtual_rgb > 0:
                terms["virtual_rgb"] = cfg.virtual_rgb * masked_mean(
                    (extra["virtual"]["rgb"] - batch["virtual_rgb"]).abs(),
                    camera_mask(v_valid, extra["virtual"]["rgb"]))
            if cfg.virtual_depth > 0:
                terms["virtual_depth"] = cfg.virtual_depth * dense_depth_loss(
                    extra["virtual"]["depth"], batch["virtual_depth"], cfg.dense_near_range, cfg.dense_far_range,
                    v_valid, cfg.depth_log_l1)
        if cfg.features > 0 and "features" in out and "features" in batch and bool(batch["features_valid"].any()):
            terms["features"] = cfg.features * feature_l1_loss(out["features"], batch["features"],
                                                               batch["features_valid"])
        if cfg.feature_contrast > 0 and "features" in out and "features" in batch and \
                bool(batch["features_valid"].any()):
            mask = camera_mask(batch["features_valid"] & (valid if valid is not None else True), out["depth"])
            terms["feature_contrast"] = cfg.feature_contrast * feature_contrast_loss(
                out["features"], batch["features"], mask, self.class_prototypes, cfg.feature_temperature)
        if cfg.voxel_contrast > 0 and out.get("samples") is not None and "features" in batch and \
                "features" in out["field"].decoded and bool(batch["features_valid"].any()):
            mask = camera_mask(batch["features_valid"] & (valid if valid is not None else True), out["depth"])
            terms["voxel_contrast"] = cfg.voxel_contrast * voxel_contrast_loss(
                out["samples"], out["field"].decoded["features"], batch["features"], mask, self.class_prototypes,
                cfg.feature_temperature, cfg.voxel_contrast_rays)
        if cfg.line_of_sight > 0 and "weights" in out and "sample_depths" in out:
            surface = self._surface_target(batch, valid)
            if surface is not None:
                terms["line_of_sight"] = cfg.line_of_sight * line_of_sight_loss(
                    out["weights"], out["sample_depths"], surface[0], surface[1], cfg.line_of_sight_margin)
        if cfg.entropy > 0 and "weights" in out:
            terms["entropy"] = cfg.entropy * ray_entropy_loss(out["weights"])
        if cfg.opacity > 0 and "opacity" in out:
            terms["opacity"] = cfg.opacity * opacity_loss(out["opacity"])
        if cfg.density_distill > 0 and "density" in extra:
            terms["density_distill"] = cfg.density_distill * density_distillation_loss(
                extra["density"]["student"], extra["density"]["teacher"], cfg.density_step)
        if cfg.coordinate > 0 and "coordinates" in extra:
            terms["coordinate"] = cfg.coordinate * coordinate_loss(*extra["coordinates"])
        if not terms:
            raise ValueError("every loss term is disabled or lacks its target: nothing to train on")
        total = torch.stack([t.float() for t in terms.values()]).sum()
        return total, {name: float(value.detach()) for name, value in terms.items()}
