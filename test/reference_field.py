"""The field lookup and renderer as they were before the O(1) index and the packed renderer (kept here, not in
the product, as the slow reference the fast path must equal): every sample is contracted and binary-searched
(``searchsorted`` over sorted keys) on both levels, all channels are gathered per hit sample, then index-added."""

from __future__ import annotations

import torch
from torch import Tensor

from distillnerf.depth import expected_depth, volume_render_weights
from distillnerf.renderer import sample_deltas
from distillnerf.voxels import VoxelLevel, linear_key, quantise


def search_rows(level: VoxelLevel, batch: Tensor, index: Tensor) -> Tensor:
    """Row of each (batch, voxel) by binary search over the level's sorted keys, -1 where empty."""
    keys = linear_key(batch, index, level.resolution)
    if level.keys.numel() == 0:
        return torch.full_like(keys, -1)
    position = torch.searchsorted(level.keys, keys).clamp_(max=level.keys.numel() - 1)
    return torch.where(level.keys[position] == keys, position, torch.full_like(position, -1))


def reference_rows(field, batch: Tensor, points: Tensor) -> Tensor:
    """Stacked row [coarse; fine; empty] of each ego point, with the density complement."""
    coords = field.contract(points)
    coarse_rows = search_rows(field.coarse, batch, quantise(coords, field.coarse.resolution))
    vc, vf = field.coarse.keys.numel(), field.fine.keys.numel()
    rows = torch.where(coarse_rows >= 0, coarse_rows, torch.full_like(coarse_rows, vc + vf))
    inside = (coarse_rows >= 0).nonzero()[:, 0]
    fine_rows = search_rows(field.fine, batch[inside], quantise(coords[inside], field.fine.resolution))
    return rows.index_put((inside,), torch.where(fine_rows >= 0, fine_rows + vc, rows[inside]))


def reference_query(field, batch: Tensor, points: Tensor, names: tuple[str, ...]) -> dict[str, Tensor]:
    rows = reference_rows(field, batch, points)
    return {name: field.decoded[name][rows] for name in names}


def reference_render(field, batch: Tensor, origins: Tensor, directions: Tensor, t: Tensor, far: float,
                     channels: tuple[str, ...]) -> dict[str, Tensor]:
    r, s = t.shape
    points = (origins[:, None, :] + directions[:, None, :] * t[..., None]).reshape(-1, 3)
    sample_batch = batch[:, None].expand(r, s).reshape(-1)
    rows = reference_rows(field, sample_batch, points)
    density = field.decoded["density"][rows].reshape(r, s)
    weights, opacity = volume_render_weights(density, sample_deltas(t, far))
    out = {"weights": weights, "opacity": opacity, "distance": expected_depth(weights, t, opacity, far)}
    empty = field.coarse.keys.numel() + field.fine.keys.numel()
    hit_index = (rows != empty).nonzero()[:, 0]
    for name in channels:
        value = field.decoded[name][rows[hit_index]]
        contribution = weights.reshape(-1)[hit_index, None] * value
        out[name] = contribution.new_zeros(r, value.shape[-1]).index_add_(0, hit_index // s, contribution)
    return out
