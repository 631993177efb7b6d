"""Photometric augmentation of training images: exposure, contrast, colour balance, blur and sensor noise, drawn
per camera, so that a model trained on one renderer's images meets real cameras' variety.

Only pixel values change: geometry, depth and feature targets stay valid as they are. The augmented image is also
the reconstruction target (the model renders what it was shown). Draws come from torch's RNG, which the trainer
saves and restores (and the data loader seeds per step), so a resumed run sees the same augmentations.
"""

from __future__ import annotations

from dataclasses import dataclass

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
