"""CNN decoder: the rendered feature image (render features + normalised depth) at render size -> RGB at input
size, with one learned 2x upsampling (the paper's decoder, about 1 M parameters at 128 channels)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillnerf.config import ModelConfig
from distillnerf.precision import cnn_autocast


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels, channels, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x + self.body(x))


class RGBDecoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config.decoder_channels
        self.size = (config.input_height, config.input_width)
        self.precision = config.cnn_precision
        self.inp = nn.Sequential(nn.Conv2d(config.render_feature_dim + 1, c, 3, 1, 1), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[ResidualBlock(c) for _ in range(config.decoder_blocks)])
        self.up = nn.Sequential(nn.ConvTranspose2d(c, c // 2, 4, 2, 1), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(c // 2, 3, 3, 1, 1)

    def forward(self, rendered: Tensor) -> Tensor:
        """rendered [B', Fr+1, h, w] -> rgb [B', 3, H, W] in [0, 1]."""
        with cnn_autocast(self.precision, rendered.device):
            x = self.up(self.blocks(self.inp(rendered)))
            if x.shape[-2:] != self.size:
                x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
            x = self.out(x)
        return torch.sigmoid(x.float())
