"""Two-stage probabilistic depth and lifting to 3D points.

Stage 1 predicts a density per categorical depth bin and renders it along the ray with ordinary volume rendering
(not a softmax), giving an expected depth and per-bin weights. Stage 2 places K candidate depths around that
depth and predicts one probability per candidate (3D convolution over the candidate axis). Each candidate becomes
a 3D point at (ray direction x candidate distance) carrying probability x image feature and a density logit.
All depths here are distances along the ray; conversion to camera z happens where depth leaves the model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillnerf.config import ModelConfig
from distillnerf.geometry import contract_distance, uncontract_distance
from distillnerf.precision import cnn_autocast


def depth_bin_edges(config: ModelConfig) -> Tensor:
    """Stage-1 bin edges [D+1]: linear bins of ``depth_step`` from ``depth_near``, then bins uniform in contracted
    distance out to ``far`` (so the far range costs few bins)."""
    linear_end = config.depth_near + config.depth_linear_bins * config.depth_step
    linear = torch.linspace(config.depth_near, linear_end, config.depth_linear_bins + 1, dtype=torch.float64)
    if config.depth_contracted_bins == 0:
        return linear.float()
    radius, alpha = config.contraction_radius_xy, config.contraction_alpha
    s0 = contract_distance(torch.tensor(linear_end, dtype=torch.float64), radius, alpha)
    s1 = contract_distance(torch.tensor(config.far, dtype=torch.float64), radius, alpha)
    s = torch.linspace(float(s0), float(s1), config.depth_contracted_bins + 1, dtype=torch.float64)[1:]
    far = uncontract_distance(s, radius, alpha)
    far[-1] = config.far
    return torch.cat([linear, far]).float()


def volume_render_weights(density: Tensor, deltas: Tensor) -> tuple[Tensor, Tensor]:
    """Weights w_i = T_i (1 - exp(-sigma_i delta_i)) along the last axis; returns (weights, opacity = sum w)."""
    optical = density * deltas
    alpha = 1.0 - torch.exp(-optical)
    # T_i = exp(-sum_{j<i} sigma_j delta_j): an exclusive cumulative sum (stable, no product of small numbers).
    transmittance = torch.exp(-(torch.cumsum(optical, dim=-1) - optical))
    weights = alpha * transmittance
    return weights, weights.sum(dim=-1)


def expected_depth(weights: Tensor, depths: Tensor, opacity: Tensor, far: float) -> Tensor:
    """Expected ray distance; the untouched remainder of each ray (1 - opacity) lies at the far plane."""
    return (weights * depths).sum(dim=-1) + (1.0 - opacity).clamp_min(0.0) * far


def candidate_depths(depth: Tensor, config: ModelConfig) -> Tensor:
    """Stage-2 candidates [..., K]: d + k * clamp(rel * d, min, max) for k = first_k .. first_k + K - 1."""
    k = torch.arange(config.num_candidates, device=depth.device, dtype=depth.dtype) + config.candidate_first_k
    step = (config.candidate_rel_step * depth).clamp(config.candidate_min_step, config.candidate_max_step)
    return (depth[..., None] + k * step[..., None]).clamp(config.depth_near, config.far)


class DepthHeads(nn.Module):
    """From FPN features: stage-1 bin densities, lifted image features, and stage-2 candidate logits."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config.fpn_channels
        self.config = config
        self.register_buffer("edges", depth_bin_edges(config), persistent=False)
        self.bin_head = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(c, config.num_bins, 1))
        self.feature_head = nn.Conv2d(c, 2 * config.level_channels, 1)
        cc = config.candidate_channels
        self.candidate_reduce = nn.Conv2d(c, cc, 1)
        self.candidate_conv = nn.Sequential(nn.Conv3d(cc + 1, cc, 3, 1, 1), nn.ReLU(inplace=True),
                                            nn.Conv3d(cc, 2, 3, 1, 1))

    @property
    def centres(self) -> Tensor:
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    def coarse(self, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """features [B',C,h,w] -> (expected distance [B',h,w], weights [B',h,w,D], opacity [B',h,w])."""
        with cnn_autocast(self.config.cnn_precision, features.device):
            logits = self.bin_head(features)
        density = F.softplus(logits.float() + self.config.bin_density_bias).permute(0, 2, 3, 1)
        deltas = self.edges[1:] - self.edges[:-1]
        weights, opacity = volume_render_weights(density, deltas)
        return expected_depth(weights, self.centres, opacity, self.config.far), weights, opacity

    def fine(self, features: Tensor, coarse_distance: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> candidate distances [B',h,w,K], probabilities [B',h,w,K] (sum 1), density logits [B',h,w,K]."""
        candidates = candidate_depths(coarse_distance.detach(), self.config)  # [B',h,w,K]
        k = candidates.shape[-1]
        depth_code = (torch.log(candidates) / math.log(self.config.far)).permute(0, 3, 1, 2)
        with cnn_autocast(self.config.cnn_precision, features.device):
            reduced = self.candidate_reduce(features)  # [B',cc,h,w]
            volume = torch.cat([reduced[:, :, None].expand(-1, -1, k, -1, -1),
                                depth_code[:, None].to(reduced.dtype)], dim=1)
            # channels-last 3D: the candidate convolution's backward is ~3x faster on it (oneDNN), same values
            logits = self.candidate_conv(volume.contiguous(memory_format=torch.channels_last_3d)).float()
        probability = torch.softmax(logits[:, 0], dim=1).permute(0, 2, 3, 1)
        density_logit = logits[:, 1].permute(0, 2, 3, 1)
        return candidates, probability, density_logit

    def image_features(self, features: Tensor) -> Tensor:
        # contiguous: lifting broadcasts these over the K candidates, which is slow on a permuted view
        return self.feature_head(features).permute(0, 2, 3, 1).contiguous()  # [B',h,w,2*level_channels]


def lift_points(origins: Tensor, directions: Tensor, candidates: Tensor) -> Tensor:
    """Every candidate as a 3D point [..., K, 3]: origin + direction x candidate distance. Its features
    (probability x the pixel's image feature, and its density logit) stay per pixel until pooling
    (:class:`distillnerf.voxels.LiftedPoints`)."""
    return origins[..., None, :] + directions[..., None, :] * candidates[..., None]
