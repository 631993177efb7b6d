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


def _sum_along_candidates(parts: Tensor) -> Tensor:
    """``parts [B, O, 3, K, h, w]``, the contribution of candidate slice k through candidate offset dk = -1, 0, +1
    (dim 2), computed at slice k -> their sum at each output slice ``[B, O, K, h, w]`` (output k reads slice
    k + dk; slices beyond either end are the convolution's zero padding)."""
    out = parts[:, :, 1].clone()
    out[:, :, 1:] += parts[:, :, 0, :-1]
    out[:, :, :-1] += parts[:, :, 2, 1:]
    return out


def candidate_convolution(reduced: Tensor, depth_code: Tensor, first: nn.Conv3d, second: nn.Conv3d) -> Tensor:
    """The stage-2 candidate network, ``second(relu(first(volume)))`` with 3x3x3 kernels over (candidate, row,
    column), on the volume ``[reduced [B,C,h,w] repeated at each of the K candidates; depth_code [B,K,h,w]]`` ->
    ``[B, O, K, h, w]``, without building the volume: equal to the two Conv3d up to float rounding
    (test_model_depth.py); at the `cpu` model's shapes forward 2.7x and with its backward 2.3x faster on one CPU
    thread, 1.6x and 1.3x on two (docs/model.md).

    The reduced features are the same at every candidate, so the first layer's share of them is, at each candidate,
    a 2D convolution with the kernel summed over the candidate offsets that exist there (all three inside, two at
    either end): one 2D convolution with the three offsets' kernels as outputs, then sums. The depth code varies
    along the candidates and keeps a 3D convolution (one input channel). The second layer's 3D convolution has two
    outputs, which oneDNN runs far below its peak; it runs per candidate slice as a 2D convolution with (offset,
    output) as six outputs, summed along the candidate axis."""
    b, c, h, w = reduced.shape
    k = depth_code.shape[1]
    o = first.out_channels
    per_offset = first.weight[:, :c].permute(2, 0, 1, 3, 4).reshape(3 * o, c, 3, 3)  # (dk, out) x in x 3 x 3
    parts = F.conv2d(reduced, per_offset, padding=1).view(b, 1, 3, o, h, w)
    code = F.conv3d(depth_code[:, None].to(reduced.dtype), first.weight[:, c:], first.bias, padding=1)
    hidden = code.permute(0, 2, 1, 3, 4) + parts.sum(2)  # [B, K, o, h, w]: every candidate's three offsets
    hidden[:, 0] -= parts[:, 0, 0]  # the first candidate has none before it (offset -1 reads the padding)
    hidden[:, -1] -= parts[:, 0, 2]  # the last none after it
    hidden = torch.relu_(hidden)
    o2 = second.out_channels
    per_offset = second.weight.permute(2, 0, 1, 3, 4).reshape(3 * o2, o, 3, 3)
    parts = F.conv2d(hidden.reshape(b * k, o, h, w), per_offset, padding=1).view(b, k, 3, o2, h, w)
    parts = parts.permute(0, 3, 2, 1, 4, 5)
    return _sum_along_candidates(parts) + second.bias[None, :, None, None, None]


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
        depth_code = (torch.log(candidates) / math.log(self.config.far)).permute(0, 3, 1, 2)
        with cnn_autocast(self.config.cnn_precision, features.device):
            reduced = self.candidate_reduce(features)  # [B',cc,h,w]
            first, _, second = self.candidate_conv
            logits = candidate_convolution(reduced, depth_code, first, second).float()
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
