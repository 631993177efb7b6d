"""Losses that teach the field what things are: rendered features against their targets (the paper's L1), and
class-balanced contrast of rendered and per-voxel features against the class prototypes (not in the paper)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distillnerf.relevance import nearest_class

from .masking import camera_mask, masked_mean


def feature_l1_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """L1 between rendered ``[B,N,F,h,w]`` and PCA-reduced target features, cameras with a target only."""
    return masked_mean((pred - target).abs(), camera_mask(valid, pred))


def pixel_classes(target: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """[B,N,h,w] index of the class prototype [C,F] nearest each pixel's target feature [B,N,F,h,w]."""
    t = target.permute(0, 1, 3, 4, 2)
    return nearest_class(t.reshape(-1, t.shape[-1]), prototypes).reshape(t.shape[:-1])


def feature_contrast_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, prototypes: torch.Tensor,
                          temperature: float) -> torch.Tensor:
    """Class-balanced cross-entropy of rendered features ``[B,N,F,h,w]`` against class ``prototypes`` [C,F]; each
    pixel's class is the prototype nearest its target feature (exact for targets made from labels, zero-shot
    pseudo-labels for distilled CLIP features)."""
    f = pred.permute(0, 1, 3, 4, 2)[valid].reshape(-1, pred.shape[2]).float()
    t = target.permute(0, 1, 3, 4, 2)[valid].reshape(-1, target.shape[2]).float()
    if f.shape[0] == 0:
        return pred.new_zeros(())
    prototypes = prototypes.to(f)
    labels = nearest_class(t, prototypes)
    logits = -torch.cdist(f, prototypes).square() / temperature
    per_pixel = F.cross_entropy(logits, labels, reduction="none")
    return class_balanced_mean(per_pixel, labels, labels, prototypes.shape[0])


def class_balanced_mean(values: torch.Tensor, labels: torch.Tensor, item_labels: torch.Tensor,
                        classes: int) -> torch.Tensor:
    """Mean over the present classes of each class's sum of ``values`` (labelled ``labels``) divided by its
    number of items (labelled ``item_labels``: pixels or rays), so frequent classes do not drown rare ones."""
    per_class = values.new_zeros(classes).index_add_(0, labels, values)
    counts = torch.bincount(item_labels, minlength=classes).to(values.dtype)
    present = counts > 0
    return (per_class[present] / counts[present]).mean()


def voxel_contrast_loss(samples: dict, decoded_features: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                        prototypes: torch.Tensor, temperature: float, rays: int) -> torch.Tensor:
    """Class-balanced cross-entropy of each contributing sample's voxel feature, weighted by its normalised
    rendering weight, on ``rays`` random rays with a feature target. ``target`` [B,N,F,h,w], ``valid`` [B,N,h,w]
    (per pixel), ``samples`` the renderer's (ray, row, weight) with rays ordered as the pixels of [B,N,h,w]."""
    t = target.permute(0, 1, 3, 4, 2).reshape(-1, target.shape[2]).float()
    ok = valid.reshape(-1)
    candidates = ok.nonzero()[:, 0]
    if candidates.numel() == 0 or samples is None:
        return target.new_zeros(())
    chosen = candidates[torch.randperm(candidates.numel(), device=candidates.device)[:rays]]
    pick = torch.zeros(ok.shape[0], dtype=torch.bool, device=ok.device)
    pick[chosen] = True
    keep = pick[samples["ray"]]
    ray, row, weight = samples["ray"][keep], samples["row"][keep], samples["weight"][keep].float()
    if ray.numel() == 0:
        return target.new_zeros(())
    prototypes = prototypes.to(t)
    labels_per_ray = nearest_class(t[chosen], prototypes)
    lookup = torch.full((ok.shape[0],), -1, dtype=torch.long, device=ok.device)
    lookup[chosen] = labels_per_ray
    labels = lookup[ray]
    total = torch.zeros(ok.shape[0], device=weight.device).index_add_(0, ray, weight)
    share = weight / total[ray].clamp_min(1e-6)  # each ray's samples weigh one ray in all
    logits = -torch.cdist(decoded_features[row].float(), prototypes).square() / temperature
    per_sample = F.cross_entropy(logits, labels, reduction="none") * share
    return class_balanced_mean(per_sample, labels, labels_per_ray, prototypes.shape[0])
