"""Optional per-camera targets cached beside a dataroot: teacher outputs, foundation features, exact ground truth.

File layout (keyed by the camera's ``sample_data`` token, or the keyframe's ``sample`` token for occupancy):

- ``DIR/teacher/<sample_data_token>.npz``: ``depth`` (camera z, float32, any resolution, 0 = none), ``sky``
  (bool), and per virtual view ``v`` in left/right/up: ``virtual_<v>_rgb`` (HxWx3 uint8 or 3xHxW float 0..1),
  ``virtual_<v>_depth`` (camera z) and ``virtual_<v>_cam_to_ego`` (4x4, in the camera's keyframe ego frame).
- ``DIR/features/<sample_data_token>.npz``: ``features`` [F,h,w] float16, already PCA-reduced to [0, 1].
- ``DIR/gt/depth/<sample_data_token>.npz``: exact dense depth ``depth`` (camera z) and optional ``sky`` mask.
- ``DIR/gt/occ3d/<scene_name>/<sample_token>/labels.npz``: Occ3D ``semantics``, ``mask_camera``, ``mask_lidar``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .augment import CropBox

VIRTUAL_VIEWS = ("left", "right", "up")


def read_npz(path: Path, required: tuple[str, ...] = ()) -> dict[str, np.ndarray] | None:
    """Arrays of an ``.npz`` file, or None if it does not exist; a clear error if it is corrupt or incomplete."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"{path}: corrupt target file ({type(error).__name__}: {error})") from error
    missing = [key for key in required if key not in arrays]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)} (has {', '.join(arrays) or 'none'})")
    return arrays


def resize_depth(depth: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Depth map to ``size`` (W, H) keeping the nearest surface: exact min-pooling for integer factors, nearest
    sampling otherwise (averaging would invent depths between foreground and background). 0 = no data."""
    d = torch.as_tensor(np.asarray(depth, dtype=np.float32))
    width, height = size
    if d.shape == (height, width):
        return d.clone()
    fy, fx = d.shape[0] / height, d.shape[1] / width
    if fx == int(fx) and fy == int(fy) and fx >= 1 and fy >= 1:
        filled = torch.where(d > 0, d, torch.full_like(d, float("inf")))
        pooled = -F.max_pool2d(-filled[None, None], kernel_size=(int(fy), int(fx)))[0, 0]
        return torch.where(torch.isfinite(pooled), pooled, torch.zeros_like(pooled))
    return F.interpolate(d[None, None], size=(height, width), mode="nearest")[0, 0]


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    m = torch.as_tensor(np.asarray(mask, dtype=np.float32))
    return F.interpolate(m[None, None], size=(size[1], size[0]), mode="nearest")[0, 0] > 0.5


def resize_image(rgb: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """``[3,H,W]`` float 0..1 from an HxWx3 uint8 or 3xHxW float array, bilinear with antialiasing."""
    t = as_image_tensor(rgb)
    if tuple(t.shape[1:]) != (size[1], size[0]):
        t = F.interpolate(t[None], size=(size[1], size[0]), mode="bilinear", align_corners=False, antialias=True)[0]
    return t.clamp(0.0, 1.0)


def as_image_tensor(rgb: np.ndarray) -> torch.Tensor:
    """``[3,H,W]`` float 0..1 from an HxWx3 uint8 or 3xHxW float array, at its own size."""
    array = np.asarray(rgb)
    if array.ndim != 3:
        raise ValueError(f"expected an RGB image, got shape {array.shape}")
    t = torch.as_tensor(array)
    if t.shape[-1] == 3 and t.shape[0] != 3:
        t = t.permute(2, 0, 1)
    return t.float() / 255.0 if array.dtype == np.uint8 else t.float()


def resize_features(features: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    f = torch.as_tensor(np.asarray(features, dtype=np.float32))
    if f.dim() != 3:
        raise ValueError(f"feature target must be [F,h,w], got shape {tuple(f.shape)}")
    if tuple(f.shape[1:]) == (size[1], size[0]):
        return f
    return F.interpolate(f[None], size=(size[1], size[0]), mode="bilinear", align_corners=False)[0]


class TargetResizer:
    """One camera's per-pixel targets to a target size (W, H): the plain resizes, or, with the camera's ``crop``,
    the same box resampled out of each target at its own resolution (nearest for depth and masks, bilinear for
    images and features), so the targets follow the cropped image."""

    def __init__(self, crop: CropBox | None = None):
        self.crop = crop

    def depth(self, depth: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        return resize_depth(depth, size) if self.crop is None else self.crop.resample(depth, size, "nearest")

    def mask(self, mask: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        return resize_mask(mask, size) if self.crop is None else self.crop.resample(mask, size, "nearest") > 0.5

    def image(self, rgb: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        if self.crop is None:
            return resize_image(rgb, size)
        return self.crop.resample(as_image_tensor(rgb), size).clamp(0.0, 1.0)

    def features(self, features: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        return resize_features(features, size) if self.crop is None else self.crop.resample(features, size)
