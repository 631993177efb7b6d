"""Evaluation metrics shared by training, evaluation, the demo and users: depth, image quality and Occ3D.

Pure numpy / torch, no model imports, so anything can score predictions saved to disk. Conventions follow the
paper's protocol: depth is camera z in metres compared without median scaling against ground truth limited to
(1e-3, 80] m; Occ3D accumulates one confusion matrix over the whole set and reports percentages.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from distillnerf.occupancy import FREE_LABEL, OCC3D_CLASSES  # the one list of Occ3D class names

OCC3D_FREE = FREE_LABEL

DEPTH_METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "d1", "d2", "d3")


def _to_numpy(array) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def _to_tensor(array) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array.detach().float().cpu()
    return torch.as_tensor(np.asarray(array), dtype=torch.float32)


def depth_metrics(pred, gt, min_depth: float = 1e-3, max_depth: float = 80.0) -> dict[str, float]:
    """Standard monocular depth errors over pixels whose ground truth lies in ``(min_depth, max_depth]``.

    Predictions are clamped to ``[min_depth, max_depth]`` (a prediction beyond the evaluation range cannot be
    more wrong than the range), never median-scaled. ``count`` is the number of valid pixels; with none, every
    metric is NaN so that an empty image is visible rather than silently perfect. A non-finite prediction where
    the ground truth is valid is refused (ValueError): leaving it out would score a broken model as perfect.
    """
    if not (math.isfinite(min_depth) and math.isfinite(max_depth) and 0.0 <= min_depth < max_depth):
        raise ValueError(f"depth_metrics: need 0 <= min_depth < max_depth, got {min_depth} and {max_depth}")
    pred = _to_numpy(pred).astype(np.float64)
    gt = _to_numpy(gt).astype(np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"depth_metrics: prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    valid = np.isfinite(gt) & (gt > min_depth) & (gt <= max_depth)
    broken = int((valid & ~np.isfinite(pred)).sum())
    if broken:
        raise ValueError(f"depth_metrics: {broken} of {int(valid.sum())} pixels with ground truth have a non-finite "
                         "prediction (NaN or inf)")
    count = int(valid.sum())
    if count == 0:
        return {**{name: math.nan for name in DEPTH_METRIC_NAMES}, "count": 0}
    p = np.clip(pred[valid], min_depth, max_depth)
    g = gt[valid]
    ratio = np.maximum(p / g, g / p)
    return {
        "abs_rel": float(np.mean(np.abs(p - g) / g)),
        "sq_rel": float(np.mean((p - g) ** 2 / g)),
        "rmse": float(np.sqrt(np.mean((p - g) ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2))),
        "d1": float(np.mean(ratio < 1.25)),
        "d2": float(np.mean(ratio < 1.25 ** 2)),
        "d3": float(np.mean(ratio < 1.25 ** 3)),
        "count": count,
    }


class MeanAccumulator:
    """Average of per-item metric dicts (per-image averaging, as the KITTI/nuScenes depth protocols do).

    NaN entries (e.g. an image without valid ground truth) are skipped per key.
    """

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    def update(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            if key == "count" or value is None or not math.isfinite(float(value)):
                continue
            self._sums[key] = self._sums.get(key, 0.0) + float(value)
            self._counts[key] = self._counts.get(key, 0) + 1

    def compute(self) -> dict[str, float]:
        return {key: self._sums[key] / self._counts[key] for key in self._sums}

    @property
    def items(self) -> int:
        return max(self._counts.values(), default=0)


def psnr(pred, gt, max_value: float = 1.0, mask=None) -> float:
    """Peak signal-to-noise ratio in dB; ``mask`` (broadcastable to the images) restricts the pixels."""
    p, g = _to_tensor(pred).double(), _to_tensor(gt).double()
    if p.shape != g.shape:
        raise ValueError(f"psnr: prediction shape {tuple(p.shape)} differs from target shape {tuple(g.shape)}")
    squared = (p - g) ** 2
    if mask is not None:
        m = _to_tensor(mask).double().expand_as(squared)
        mse = (squared * m).sum() / m.sum().clamp_min(1.0)
    else:
        mse = squared.mean()
    mse = float(mse)
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(max_value ** 2 / mse)


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim_map(pred: torch.Tensor, gt: torch.Tensor, max_value: float = 1.0, window: int = 11,
             sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM of ``[B,C,H,W]`` tensors (Gaussian 11x11, sigma 1.5, valid region; differentiable)."""
    if pred.shape != gt.shape or pred.dim() != 4:
        raise ValueError(f"ssim: expected two [B,C,H,W] tensors of one shape, got {tuple(pred.shape)} and "
                         f"{tuple(gt.shape)}")
    channels = pred.shape[1]
    size = min(window, pred.shape[-1], pred.shape[-2])
    g = _gaussian_window(size, sigma).to(pred)
    kernel_x = g.view(1, 1, 1, size).repeat(channels, 1, 1, 1)
    kernel_y = g.view(1, 1, size, 1).repeat(channels, 1, 1, 1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, kernel_x, groups=channels), kernel_y, groups=channels)

    c1, c2 = (0.01 * max_value) ** 2, (0.03 * max_value) ** 2
    mu_x, mu_y = blur(pred), blur(gt)
    sigma_x = blur(pred * pred) - mu_x ** 2
    sigma_y = blur(gt * gt) - mu_y ** 2
    sigma_xy = blur(pred * gt) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sigma_x + sigma_y + c2))


def ssim(pred, gt, max_value: float = 1.0) -> float:
    """Mean SSIM; images are ``[...,C,H,W]`` (leading dimensions are flattened into the batch)."""
    p, g = _to_tensor(pred).double(), _to_tensor(gt).double()
    if p.shape != g.shape:
        raise ValueError(f"ssim: prediction shape {tuple(p.shape)} differs from target shape {tuple(g.shape)}")
    if p.dim() < 3:
        raise ValueError(f"ssim: expected images shaped [...,C,H,W], got {tuple(p.shape)}")
    p = p.reshape(-1, *p.shape[-3:])
    g = g.reshape(-1, *g.shape[-3:])
    return float(ssim_map(p, g, max_value).mean())


class Occ3DMetrics:
    """Occ3D-nuScenes semantic occupancy scores from one confusion matrix accumulated over a set.

    As the official protocol: only camera-visible voxels count (``mask_camera``) unless ``use_mask=False``;
    mIoU averages per-class IoU over classes 0-16 (17 free excluded), skipping classes absent from both
    prediction and ground truth; geometric IoU scores occupied (any class but free) versus free. Percentages.
    """

    def __init__(self, num_classes: int = 18, free_class: int = OCC3D_FREE, use_mask: bool = True,
                 class_names: tuple[str, ...] = OCC3D_CLASSES) -> None:
        self.num_classes = num_classes
        self.free_class = free_class
        self.use_mask = use_mask
        self.class_names = class_names
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)  # [gt, pred]
        self.samples = 0

    def reset(self) -> None:
        self.confusion[:] = 0
        self.samples = 0

    def update(self, pred, gt, mask_camera=None) -> None:
        pred = _to_numpy(pred)
        gt = _to_numpy(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"Occ3D: prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
        keep = np.ones(gt.shape, dtype=bool)
        if self.use_mask:
            if mask_camera is None:
                raise ValueError("Occ3D: mask_camera is required unless use_mask=False")
            mask_camera = _to_numpy(mask_camera)
            if mask_camera.shape != gt.shape:
                raise ValueError(f"Occ3D: mask shape {mask_camera.shape} differs from ground truth shape {gt.shape}")
            keep = mask_camera.astype(bool)
        for name, labels in (("prediction", pred), ("ground truth", gt)):
            if labels.dtype.kind == "f" and not np.array_equal(labels[keep], np.round(labels[keep])):
                raise ValueError(f"Occ3D: {name} labels must be whole class numbers, found non-integer values")
            if labels.dtype.kind not in "iufb":
                raise ValueError(f"Occ3D: {name} labels must be integers, got dtype {labels.dtype}")
        p = pred[keep].astype(np.int64)
        g = gt[keep].astype(np.int64)
        for name, labels in (("prediction", p), ("ground truth", g)):
            if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise ValueError(f"Occ3D: {name} labels must lie in 0..{self.num_classes - 1}, found "
                                 f"{labels.min()}..{labels.max()}")
        self.confusion += np.bincount(g * self.num_classes + p, minlength=self.num_classes ** 2).reshape(
            self.num_classes, self.num_classes)
        self.samples += 1

    def per_class_iou(self) -> np.ndarray:
        """IoU per class in percent; NaN for classes absent from both prediction and ground truth."""
        tp = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(union > 0, 100.0 * tp / np.maximum(union, 1), np.nan)

    def geometric_iou(self) -> float:
        """Occupied-versus-free IoU in percent (any semantic class counts as occupied)."""
        occupied = np.arange(self.num_classes) != self.free_class
        tp = self.confusion[np.ix_(occupied, occupied)].sum()
        fp = self.confusion[self.free_class, occupied].sum()  # gt free, predicted occupied
        fn = self.confusion[occupied, self.free_class].sum()  # gt occupied, predicted free
        union = tp + fp + fn
        return float(100.0 * tp / union) if union > 0 else math.nan

    def miou(self) -> float:
        """Mean IoU in percent over the classes but free that prediction or ground truth contains (NaN if none)."""
        semantic = np.delete(self.per_class_iou(), self.free_class)
        return float(np.nanmean(semantic)) if np.isfinite(semantic).any() else math.nan

    def compute(self) -> dict:
        semantic = np.delete(self.per_class_iou(), self.free_class)
        names = [n for i, n in enumerate(self.class_names) if i != self.free_class]
        return {
            "miou": self.miou(),
            "geometric_iou": self.geometric_iou(),
            "per_class_iou": {name: (None if math.isnan(v) else float(v)) for name, v in zip(names, semantic)},
            "samples": self.samples,
            "voxels": int(self.confusion.sum()),
            "use_mask": self.use_mask,
        }


def average_precision(scores, labels) -> float:
    """Average precision of ``scores`` ranking the positive ``labels`` first (precision at each positive, averaged
    over the positives; ties in score are broken by order). NaN when there is no positive."""
    s = _to_numpy(scores).astype(np.float64).reshape(-1)
    y = _to_numpy(labels).astype(bool).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} differ in shape")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    positives = int(y.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    hits = y[order]
    precision_at_hit = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1.0)
    return float(precision_at_hit.mean())
