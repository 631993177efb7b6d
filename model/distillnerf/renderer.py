"""Ray sampling and volume rendering of the sparse field.

Samples per ray = the stage-1 depth bins (jittered within their bin in training, bin centres otherwise) plus
``fine_samples`` at ``fine_spacing`` around the highest-weight stage-1 bin.

Rendering follows nerfacc: the sparse field is the occupancy grid, so each sample is looked up once (O(1), see
:class:`distillnerf.voxels.TwoLevelIndex`) and only samples that hit an occupied voxel are kept, packed ray by
ray. Rays are marched a chunk of samples at a time and leave the march once their transmittance falls below
``early_stop_transmittance`` (early ray termination, 0 = off): what lies behind a surface is never looked up.
Multi-channel
outputs are the weighted sums of per-voxel rows, computed by ``embedding_bag`` without materialising a
[samples, channels] tensor (and with a sparse backward).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from distillnerf import cpu_kernels
from distillnerf.config import ModelConfig
from distillnerf.field import FieldHeads, SparseVoxelField
from distillnerf.geometry import contract_components


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
                t: Tensor, far: float, channels: tuple[str, ...], early_stop_transmittance: float = 0.0,
                march_chunk: int = 0) -> dict[str, Tensor]:
    """Volume-render R rays (batch [R], origins/directions [R,3], sample distances t [R,S]).

    Returns weights [R,S], opacity [R], distance [R] (expected ray distance, remainder at ``far``) and, for each
    name in ``channels`` (decoded per-voxel outputs such as 'render', 'features'), the weighted sum [R, C].

    With ``early_stop_transmittance`` > 0 the rays are marched ``march_chunk`` samples at a time (0 = all at once)
    and a ray leaves the march once its transmittance falls below the threshold: its later samples are never
    looked up, and samples past the threshold inside the last chunk get weight zero. The dropped weight of a ray
    is at most the threshold, so opacity and every weighted sum move by at most threshold x their largest value.
    ``heads`` is unused with nearest lookup (the field carries its decoded rows) and evaluates the trilinear one.
    """
    r, s = t.shape
    if heads.config.lookup != "nearest":
        return _render_interpolated(heads, field, batch, origins, directions, t, far, channels)
    if _compiled_march_applies(field, t, channels):
        return _render_compiled(field, batch, origins, directions, t, far, channels, early_stop_transmittance,
                                march_chunk)
    chunk = s if early_stop_transmittance <= 0.0 or march_chunk <= 0 else march_chunk
    stop_optical = -math.log(early_stop_transmittance) if early_stop_transmittance > 0.0 else math.inf
    deltas = sample_deltas(t, far)
    density = field.decoded["density"]
    carry = density.new_zeros(r)  # optical depth accumulated by each ray in the chunks marched so far
    active: Tensor | None = None  # rays still marching (None = all)
    pieces = []
    for start in range(0, s, chunk):
        stop = min(s, start + chunk)
        piece = _march_chunk(field, batch, origins, directions, t, deltas, carry, active, start, stop,
                             early_stop_transmittance)
        pieces.append(piece)
        carry = piece["carry"]
        if stop < s and math.isfinite(stop_optical):
            alive = carry[piece["rays"]] < stop_optical
            active = piece["rays"][alive]
            if active.numel() == 0:
                break
    flat = torch.cat([p["flat"] for p in pieces])
    weights_packed = torch.cat([p["weights"] for p in pieces])
    rows_packed = torch.cat([p["rows"] for p in pieces])
    ray_of = flat // s
    weights = weights_packed.new_zeros(r * s).index_put((flat,), weights_packed).reshape(r, s)
    opacity = weights_packed.new_zeros(r).index_add_(0, ray_of, weights_packed)
    distance = weights_packed.new_zeros(r).index_add_(0, ray_of, weights_packed * t.reshape(-1)[flat])
    out = {"weights": weights, "opacity": opacity,
           "distance": distance + (1.0 - opacity).clamp_min(0.0) * far,
           # the samples that contribute: ray of each, its row in the field's table, its weight
           "samples": {"ray": ray_of, "row": rows_packed, "weight": weights_packed}}
    if channels:
        # One bag per (chunk, marching ray): packed samples are sorted by ray within a chunk. embedding_bag forms
        # the weighted sums without materialising [samples, channels], in the weights' precision (fp32 under
        # autocast); the channels share one table so the gather runs once.
        table = torch.cat([field.decoded[name] for name in channels], dim=1).to(weights_packed.dtype)
        counts = torch.cat([p["counts"] for p in pieces])
        bags = F.embedding_bag(rows_packed, table, torch.cumsum(counts, 0) - counts,
                               mode="sum", per_sample_weights=weights_packed)
        if len(pieces) > 1:
            bags = bags.new_zeros(r, bags.shape[1]).index_add(0, torch.cat([p["rays"] for p in pieces]), bags)
        widths = [field.decoded[name].shape[1] for name in channels]
        out.update(zip(channels, bags.split(widths, dim=1)))
    return out


def _march_chunk(field: SparseVoxelField, batch: Tensor, origins: Tensor, directions: Tensor, t: Tensor,
                 deltas: Tensor, carry: Tensor, active: Tensor | None, start: int, stop: int, early_stop: float
                 ) -> dict[str, Tensor]:
    """Samples ``start:stop`` of the ``active`` rays (None = all): look each up once, keep the hits."""
    s = t.shape[1]
    if active is None:
        rays = torch.arange(t.shape[0], device=t.device)
        t_c, d_c, o, d, b, before = t[:, start:stop], deltas[:, start:stop], origins, directions, batch, carry
    else:
        rays = active
        t_c, d_c = t[active, start:stop], deltas[active, start:stop]
        o, d, b, before = origins[active], directions[active], batch[active], carry[active]
    a, k = t_c.shape
    # sample points as separate contiguous x, y, z arrays [A, k]: every pass of the lookup stays contiguous
    x, y, z = (oc[:, None] + dc[:, None] * t_c for oc, dc in zip(o.unbind(-1), d.unbind(-1)))
    rows = field.index.rows_of_components(b[:, None] if field.batch_size > 1 else None,
                                          *contract_components(x, y, z, field.radius_xy, field.radius_z,
                                                               field.alpha)).reshape(-1)
    hit = (rows != field.empty_row).nonzero()[:, 0]  # sorted by ray, then by distance
    rows = rows[hit]
    density = field.decoded["density"]
    optical = density[rows] * d_c.reshape(-1)[hit].to(density.dtype)
    # exclusive per-ray sums over the dense [A, k] optical depths: each ray sums only its own samples
    dense = optical.new_zeros(a * k).index_put((hit,), optical).reshape(a, k)
    inclusive = torch.cumsum(dense, dim=-1)
    exclusive = (inclusive - dense).reshape(-1)[hit] + before.repeat_interleave(
        torch.bincount(hit // k, minlength=a))
    transmittance = torch.exp(-exclusive)
    weights = transmittance * (1.0 - torch.exp(-optical))
    local_ray = hit // k
    if early_stop > 0.0:
        keep = (transmittance >= early_stop).nonzero()[:, 0]
        hit, rows, weights, local_ray = hit[keep], rows[keep], weights[keep], local_ray[keep]
    counts = torch.bincount(local_ray, minlength=a)
    flat = rays[local_ray] * s + start + hit % k
    new_carry = carry.index_put((rays,), before + inclusive[:, -1])
    return {"flat": flat, "rows": rows, "weights": weights, "counts": counts, "rays": rays, "carry": new_carry}


def _compiled_march_applies(field: SparseVoxelField, t: Tensor, channels: tuple[str, ...]) -> bool:
    """Inference on the CPU (nothing to differentiate) over a coarse level with a dense row table: the compiled
    march (``csrc/march_cpu.cpp``) does the same steps in one pass per ray."""
    tables = [field.decoded["density"]] + [field.decoded[name] for name in channels]
    if t.device.type != "cpu" or t.dtype != torch.float32 or not cpu_kernels.available():
        return False
    if torch.is_grad_enabled() and any(table.requires_grad for table in tables + [t]):
        return False
    return all(table.dtype == torch.float32 for table in tables) and field.coarse.dense_rows() is not None


def _render_compiled(field: SparseVoxelField, batch: Tensor, origins: Tensor, directions: Tensor, t: Tensor,
                     far: float, channels: tuple[str, ...], early_stop_transmittance: float, march_chunk: int
                     ) -> dict[str, Tensor]:
    r, s = t.shape
    index = field.index
    tables = [field.decoded[name] for name in channels] or [t.new_zeros(0, 0)]
    # one channel (the node's render features) is read in place: a cat would copy every voxel's row
    table = tables[0] if len(tables) == 1 else torch.cat(tables, dim=1)
    weights, rows, opacity, weighted_distance, sums = cpu_kernels.kernels().march(
        t.contiguous(), sample_deltas(t, far).contiguous(), origins, directions,
        batch if field.batch_size > 1 else batch.new_zeros(0), field.coarse.dense_rows(), index.blocks,
        field.decoded["density"], table.contiguous(), field.fine.resolution, index.ratio, field.coarse.keys.numel(),
        field.empty_row, field.radius_xy, field.radius_z, field.alpha,
        max(early_stop_transmittance, 0.0), march_chunk if early_stop_transmittance > 0.0 else 0)
    flat = (rows.reshape(-1) >= 0).nonzero()[:, 0]
    out = {"weights": weights, "opacity": opacity,
           "distance": weighted_distance + (1.0 - opacity).clamp_min(0.0) * far,
           "samples": {"ray": flat // s, "row": rows.reshape(-1)[flat].long(), "weight": weights.reshape(-1)[flat]}}
    if channels:
        widths = [field.decoded[name].shape[1] for name in channels]
        out.update(zip(channels, sums.split(widths, dim=1)))
    return out


def _render_interpolated(heads: FieldHeads, field: SparseVoxelField, batch: Tensor, origins: Tensor,
                         directions: Tensor, t: Tensor, far: float, channels: tuple[str, ...]) -> dict[str, Tensor]:
    """Trilinear lookup: the heads run per sample (not per voxel), so every sample is evaluated."""
    from distillnerf.depth import expected_depth, volume_render_weights

    r, s = t.shape
    points = (origins[:, None, :] + directions[:, None, :] * t[..., None]).reshape(-1, 3)
    sample_batch = batch[:, None].expand(r, s).reshape(-1)
    values, hit = heads.query(field, sample_batch, points, ("density",) + tuple(channels))
    weights, opacity = volume_render_weights(values["density"].reshape(r, s), sample_deltas(t, far))
    out = {"weights": weights, "opacity": opacity, "distance": expected_depth(weights, t, opacity, far)}
    for name in channels:
        out[name] = (weights[..., None] * values[name].reshape(r, s, -1)).sum(dim=1)
    return out
