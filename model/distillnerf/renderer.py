"""Ray sampling and volume rendering of the sparse field.

Samples per ray = the stage-1 depth bins (jittered within their bin in training, bin centres otherwise) plus
``fine_samples`` at ``fine_spacing`` around the highest-weight stage-1 bin. Rendering accumulates only samples that
hit an occupied voxel (empty space has zero density and contributes nothing), which keeps memory proportional
to the occupied samples rather than rays x samples x channels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from distillnerf.config import ModelConfig
from distillnerf.depth import expected_depth, volume_render_weights
from distillnerf.field import FieldHeads, SparseVoxelField


def ray_samples(edges: Tensor, coarse_weights: Tensor, config: ModelConfig, jitter: bool) -> Tensor:
    """Sorted sample distances [R, D + fine_samples] from bin edges [D+1] and stage-1 weights [R, D]."""
    lower, width = edges[:-1], edges[1:] - edges[:-1]
    r = coarse_weights.shape[0]
    if jitter:
        u = torch.rand(r, lower.shape[0], device=edges.device, dtype=edges.dtype)
    else:
        u = torch.full((1, lower.shape[0]), 0.5, device=edges.device, dtype=edges.dtype)
    bins = (lower + u * width).expand(r, -1)
    if config.fine_samples == 0:
        return bins
    best = (lower + 0.5 * width)[coarse_weights.argmax(dim=-1)]  # [R]
    offsets = (torch.arange(config.fine_samples, device=edges.device, dtype=edges.dtype)
               - 0.5 * (config.fine_samples - 1)) * config.fine_spacing
    fine = (best[:, None] + offsets).clamp(config.depth_near, config.far)
    return torch.sort(torch.cat([bins, fine], dim=-1), dim=-1).values


def sample_deltas(t: Tensor, far: float) -> Tensor:
    """Interval lengths: to the next sample, and from the last sample to the far plane (at least 1 mm)."""
    deltas = torch.diff(t, dim=-1, append=torch.full_like(t[..., :1], far))
    return deltas.clamp_min(1e-3)


def render_rays(heads: FieldHeads, field: SparseVoxelField, batch: Tensor, origins: Tensor, directions: Tensor,
                t: Tensor, far: float, channels: tuple[str, ...]) -> dict[str, Tensor]:
    """Volume-render R rays (batch [R], origins/directions [R,3], sample distances t [R,S]).

    Returns weights [R,S], opacity [R], distance [R] (expected ray distance, remainder at ``far``) and, for each
    name in ``channels`` (decoded per-voxel outputs such as 'render', 'features'), the weighted sum [R, C].
    """
    r, s = t.shape
    points = origins[:, None, :] + directions[:, None, :] * t[..., None]
    sample_batch = batch[:, None].expand(r, s).reshape(-1)
    flat_points = points.reshape(-1, 3)
    # Densities for all samples; multi-channel outputs only where a voxel was hit (the rest are zero).
    values, hit = heads.query(field, sample_batch, flat_points, ("density",))
    density = values["density"].reshape(r, s)
    weights, opacity = volume_render_weights(density, sample_deltas(t, far))
    out = {"weights": weights, "opacity": opacity, "distance": expected_depth(weights, t, opacity, far)}
    if channels:
        hit_index = hit.nonzero()[:, 0]
        values, _ = heads.query(field, sample_batch[hit_index], flat_points[hit_index], tuple(channels))
        ray_index = hit_index // s
        flat_weights = weights.reshape(-1)[hit_index, None]
        for name in channels:
            value = values[name]
            contribution = flat_weights * value  # promoted to the weights' precision (fp32 under autocast)
            out[name] = contribution.new_zeros(r, value.shape[-1]).index_add_(0, ray_index, contribution)
    return out
