"""Augmentation of training images, drawn per camera, so that a model trained on one renderer's images meets real
cameras' variety.

- Photometric (exposure, contrast, colour balance, blur, sensor noise): only pixel values change; geometry, depth
  and feature targets stay valid as they are.
- Geometric (``CropBox``: a zoom into part of the image with the intrinsics kept right): the loader crops the
  image and every per-pixel target with the same box and projects LiDAR through the new intrinsics, so all stay
  exact.

The augmented image is also the reconstruction target (the model renders what it was shown). Draws come from
torch's RNG, which the trainer saves and restores (and the data loader seeds per step), so a resumed run sees the
same augmentations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PhotometricAugment:
    probability: float = 0.8  # per camera image
    exposure: float = 0.35  # gain drawn log-uniformly in [1 / (1 + e), 1 + e]
    contrast: float = 0.3  # around the image mean
    colour: float = 0.1  # per-channel gain
    blur_probability: float = 0.3
    blur_sigma: float = 1.2  # pixels at most (Gaussian)
    noise: float = 0.03  # standard deviation at most

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """images [N,3,H,W] in [0, 1] -> augmented copy in [0, 1]."""
        out = images.clone()
        for i in range(images.shape[0]):
            if float(torch.rand(())) >= self.probability:
                continue
            x = out[i]
            gain = torch.exp((torch.rand(()) * 2 - 1) * torch.log1p(torch.tensor(self.exposure)))
            x = x * gain
            mean = x.mean()
            x = (x - mean) * (1 + (torch.rand(()) * 2 - 1) * self.contrast) + mean
            x = x * (1 + (torch.rand(3, 1, 1) * 2 - 1) * self.colour)
            if float(torch.rand(())) < self.blur_probability:
                x = gaussian_blur(x, float(torch.rand(())) * self.blur_sigma + 1e-3)
            x = x + torch.randn_like(x) * float(torch.rand(())) * self.noise
            out[i] = x.clamp(0.0, 1.0)
        return out


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [3,H,W] (radius 3 sigma, reflect padding)."""
    radius = max(1, int(3 * sigma + 0.5))
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = image[:, None]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return x[:, 0]


@dataclass(frozen=True)
class CropBox:
    """A zoom into part of a camera image, in fractions of its width and height. One scale for both axes, so the
    pixels keep their shape; the crop is resized back to the full size, and the intrinsics follow
    (``intrinsics``), so geometry stays exact: a 3D point lands on the same image content as before."""

    left: float
    top: float
    scale: float  # crop width / image width (= crop height / image height), in (0, 1]

    def pixels(self, width: int, height: int) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the crop in pixel-edge coordinates of a ``width`` x ``height`` image."""
        return (self.left * width, self.top * height,
                (self.left + self.scale) * width, (self.top + self.scale) * height)

    def intrinsics(self, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """K of the full image at ``size`` (W, H; pixel-edge convention) -> K of the crop resized to ``size``:
        u' = (u - x0) / scale, the same for v."""
        x0, y0, _, _ = self.pixels(*size)
        out = np.array(matrix, dtype=np.float64)
        out[0] = (out[0] - x0 * out[2]) / self.scale
        out[1] = (out[1] - y0 * out[2]) / self.scale
        return out

    def resample(self, array, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
        """The crop of an [H,W] or [C,H,W] map (any resolution: the box is in fractions) at ``size`` (W, H).
        ``nearest`` for depth and masks (averaging would invent depths between surfaces), ``bilinear`` otherwise."""
        t = torch.as_tensor(np.asarray(array, dtype=np.float32))
        flat = t.dim() == 2
        t = t[None, None] if flat else t[None]
        width, height = size
        # output pixel centres -> fractions of the source, then grid_sample's [-1, 1] (align_corners=False: the
        # outer pixel edges, the same pixel-edge convention as the intrinsics)
        xs = self.left + self.scale * (torch.arange(width, dtype=torch.float32) + 0.5) / width
        ys = self.top + self.scale * (torch.arange(height, dtype=torch.float32) + 0.5) / height
        grid = torch.stack(torch.meshgrid(xs * 2 - 1, ys * 2 - 1, indexing="xy"), dim=-1)[None]
        out = F.grid_sample(t, grid, mode=mode, padding_mode="border", align_corners=False)[0]
        return out[0] if flat else out


@dataclass(frozen=True)
class GeometricAugment:
    """Random zoom-in crops, one draw per camera image (torch's RNG, saved by the trainer: resume stays exact)."""

    probability: float = 0.5  # per camera image
    min_scale: float = 0.8  # the smallest crop, as a fraction of the image side

    def draw(self) -> CropBox | None:
        if float(torch.rand(())) >= self.probability:
            return None
        scale = self.min_scale + (1.0 - self.min_scale) * float(torch.rand(()))
        left, top = ((1.0 - scale) * float(torch.rand(())) for _ in range(2))
        return CropBox(left=left, top=top, scale=scale)
