"""The teacher's per-scene radiance field: multi-resolution dense grids in the paper's contracted space.

A scene is a whole driving sequence, so the contraction is centred on the middle of the ego trajectory with a
linear radius that covers the trajectory plus a margin; everything farther is squeezed into the outer shell.
Each level is a dense feature volume sampled trilinearly (``grid_sample``), the levels are concatenated and a
small MLP gives density and colour. A direction-only MLP paints the sky/background behind the last sample, which
is what lets the teacher output a sky mask (rays whose transmittance survives the whole field). Pure torch, so it
trains on a CPU (slowly) or a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from distillnerf.geometry import contract


@dataclass
class FieldConfig:
    levels: list[list[int]] = field(default_factory=lambda: [[32, 32, 8], [64, 64, 16], [128, 128, 32]])  # x,y,z
    level_channels: int = 4
    hidden: int = 64
    alpha: float = 0.8  # share of the contracted cube that is linear (the paper's 0.8)
    margin_xy: float = 40.0  # linear radius = trajectory radius + this margin, metres
    radius_z: float = 8.0  # linear half-height around the centre, metres
    centre_z: float = 2.0  # height of the contraction centre above the mean ego height, metres
    sky_frequencies: int = 4
    density_bias: float = -6.0  # start almost empty (opacity ~0.3 over 150 m), so the sky can claim the background


class SceneContraction(nn.Module):
    """World point -> [-1, 1]^3 with the scene's own centre and linear radii."""

    def __init__(self, centre: torch.Tensor, radius_xy: float, radius_z: float, alpha: float):
        super().__init__()
        self.register_buffer("centre", torch.as_tensor(centre, dtype=torch.float32))
        self.radius_xy, self.radius_z, self.alpha = float(radius_xy), float(radius_z), float(alpha)

    @classmethod
    def around(cls, camera_positions: torch.Tensor, config: FieldConfig) -> "SceneContraction":
        low, high = camera_positions.min(dim=0).values, camera_positions.max(dim=0).values
        centre = (low + high) / 2
        centre[2] = camera_positions[:, 2].mean() + config.centre_z
        radius = float((camera_positions[:, :2] - centre[:2]).norm(dim=-1).max()) + config.margin_xy
        return cls(centre, radius, config.radius_z, config.alpha)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return contract(points - self.centre, self.radius_xy, self.radius_z, self.alpha)


def _fourier(x: torch.Tensor, frequencies: int) -> torch.Tensor:
    scales = 2.0 ** torch.arange(frequencies, device=x.device, dtype=x.dtype) * torch.pi
    angles = x[..., None] * scales
    return torch.cat([x, torch.sin(angles).flatten(-2), torch.cos(angles).flatten(-2)], dim=-1)


class TeacherField(nn.Module):
    """Density + colour at world points, sky colour per direction."""

    def __init__(self, contraction: SceneContraction, config: FieldConfig):
        super().__init__()
        self.contraction = contraction
        self.config = config
        # grid_sample's volume layout is [C, D, H, W] indexed by (z, y, x).
        self.grids = nn.ParameterList([
            nn.Parameter(1e-2 * torch.randn(1, config.level_channels, rz, ry, rx)) for rx, ry, rz in config.levels])
        width = config.level_channels * len(config.levels)
        self.mlp = nn.Sequential(nn.Linear(width, config.hidden), nn.ReLU(), nn.Linear(config.hidden, config.hidden),
                                 nn.ReLU(), nn.Linear(config.hidden, 4))
        with torch.no_grad():
            self.mlp[-1].bias[0] = config.density_bias
        sky_in = 3 * (1 + 2 * config.sky_frequencies)
        self.sky = nn.Sequential(nn.Linear(sky_in, config.hidden), nn.ReLU(), nn.Linear(config.hidden, 3))

    def encode(self, points: torch.Tensor) -> torch.Tensor:
        """Concatenated level features [M, C*L] at world points [M, 3]."""
        coords = self.contraction(points).view(1, -1, 1, 1, 3)
        features = [F.grid_sample(grid, coords, mode="bilinear", padding_mode="border", align_corners=True)
                    .view(grid.shape[1], -1).t() for grid in self.grids]
        return torch.cat(features, dim=-1)

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """points [..., 3] -> density [...] (1/m), rgb [..., 3] in [0, 1]."""
        shape = points.shape[:-1]
        out = self.mlp(self.encode(points.reshape(-1, 3)))
        density = F.softplus(out[:, 0])
        rgb = torch.sigmoid(out[:, 1:])
        return density.view(shape), rgb.view(*shape, 3)

    def sky_rgb(self, directions: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.sky(_fourier(directions, self.config.sky_frequencies)))

    def grid_smoothness(self) -> torch.Tensor:
        """Total variation of the grids (mean squared neighbour difference): fills unseen space smoothly."""
        total = 0.0
        for grid in self.grids:
            for dim in (2, 3, 4):
                total = total + grid.diff(dim=dim).pow(2).mean()
        return total
