"""Occupancy queries on the Occ3D-nuScenes grid: probability of occupancy per voxel from the field's density.

A voxel's occupancy probability is the chance a ray crossing it is stopped: 1 - exp(-sigma * voxel_size),
evaluated at the voxel centre or, with ``subsamples`` > 1 (one count, or one per axis), as the maximum over a
regular sub-grid inside it (thin surfaces then still register).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from distillnerf.occ3d import FREE_LABEL, GROUND_LABELS, OCC3D_CLASSES, OCC3D_PALETTE, OccGridSpec  # noqa: F401


@functools.lru_cache(maxsize=8)
def _sample_points(spec: OccGridSpec, device: torch.device, subsamples: tuple[int, int, int]) -> Tensor:
    # Constant per grid: the per-frame queries must not rebuild a million points every time.
    vs = torch.tensor(spec.voxel_size, device=device)
    origin = torch.tensor(spec.origin, device=device)
    axes = [torch.arange(n, device=device, dtype=torch.float32) for n in spec.size]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 1, 3)
    offsets = [(torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n for n in subsamples]
    sub = torch.stack(torch.meshgrid(*offsets, indexing="ij"), dim=-1).reshape(1, -1, 3)
    return (origin + (grid + sub) * vs).reshape(-1, 3)


@functools.lru_cache(maxsize=8)
def _sample_cells(spec: OccGridSpec, device: torch.device, subsamples: tuple[int, int, int], contraction:
                  tuple[float, float, float], fine_resolution: int, ratio: int) -> tuple[Tensor, Tensor]:
    # The grid's sub-samples never move, so their contracted voxel cells are constant too: per frame, only the
    # field's tables are read (contracting and quantising 1.3 M points cost more than the lookup itself).
    from distillnerf.geometry import contract_components
    from distillnerf.voxels import point_cells

    points = _sample_points(spec, device, subsamples)
    coords = contract_components(*points.unbind(-1), *contraction)
    coarse_key, child = point_cells(*coords, fine_resolution, ratio)
    return coarse_key.long(), child


def grid_density(model, field, spec: OccGridSpec, subsamples: tuple[int, int, int]) -> Tensor:
    """Density [B, P] at the grid's sub-samples (:meth:`OccGridSpec.centres` order): with nearest lookup, the
    decoded densities at the grid's cached cells; otherwise (trilinear, or any model with only ``query_density``)
    through ``model.query_density``."""
    device = field.coarse.features.device
    b = field.batch_size
    config, decoded = getattr(model, "config", None), getattr(field, "decoded", None) or {}
    if config is None or config.lookup != "nearest" or "density" not in decoded:
        points = spec.centres(device, subsamples)
        return model.query_density(field, points[None].expand(b, -1, -1))
    index = field.index
    cells = _sample_cells(spec, device, subsamples, (field.radius_xy, field.radius_z, field.alpha),
                          field.fine.resolution, index.ratio)
    density = decoded["density"]
    return torch.stack([density[index.rows_of_cells(i if b > 1 else None, *cells)] for i in range(b)])


def per_axis(subsamples: int | Sequence[int]) -> tuple[int, int, int]:
    """Sub-sample counts along x, y, z from one count or three."""
    counts = (subsamples,) * 3 if isinstance(subsamples, int) else tuple(int(n) for n in subsamples)
    if len(counts) != 3 or min(counts) < 1:
        raise ValueError(f"subsamples must be a positive count or three, got {subsamples!r}")
    return counts


def occupancy_probability(model, field, spec: OccGridSpec = OccGridSpec(),
                          subsamples: int | Sequence[int] = 1) -> Tensor:
    """[B, X, Y, Z] probability in [0, 1] that each grid voxel is occupied."""
    return occupancy_and_surface(model, field, spec, subsamples)[0]


def occupancy_and_surface(model, field, spec: OccGridSpec = OccGridSpec(), subsamples: int | Sequence[int] = 1,
                          threshold: float | None = None) -> tuple[Tensor, Tensor]:
    """(probability [B, X, Y, Z], surface points [B, X, Y, Z, 3]): each voxel's probability is the maximum over its
    sub-samples, and its surface point the sub-sample where its semantics should be read (its centre may lie in the
    empty half of a voxel whose surface is a few centimetres thick): the most occupied sub-sample or, with a
    ``threshold``, the highest one above it (the most occupied of those at that height). What lies on top is what a
    voxel is: a car's lowest layer and a kerb hold road in their lower half."""
    device = field.coarse.features.device
    points = spec.centres(device, subsamples)
    b = field.batch_size
    counts = per_axis(subsamples)
    sigma = grid_density(model, field, spec, counts)
    step = min(spec.voxel_size)
    count = math.prod(counts)
    prob = (1.0 - torch.exp(-sigma * step)).reshape(b, *spec.size, count)
    best_prob, best = prob.max(dim=-1)
    if threshold is not None and counts[2] > 1:
        # sub-samples are ordered x, y, z (z fastest): rank the ones above the threshold by height, then probability
        height = torch.arange(count, device=device) % counts[2]
        rank = torch.where(prob > threshold, height + 0.5 * prob, -1.0)
        top_rank, top = rank.max(dim=-1)
        best = torch.where(top_rank >= 0, top, best)
    # each voxel's chosen sub-sample: row voxel * count + best of the [voxels * count, 3] sample points
    voxel = torch.arange(best[0].numel(), device=device).reshape(best.shape[1:]) * count
    surface = points[voxel + best]
    return best_prob.clamp(0.0, 1.0), surface


def semantic_labels(features: Tensor, class_embeddings: Tensor, occupied: Tensor,
                    class_offsets: Tensor | None = None) -> Tensor:
    """Occ3D labels: occupied voxels take the class whose embedding (in the reduced feature space the features
    were distilled into) is nearest their feature (features [..., F], class_embeddings [C, F], occupied [...]
    bool), after ``class_offsets`` [C] are added to the scores; free voxels get 17."""
    from distillnerf.relevance import nearest_class

    shape = features.shape[:-1]
    labels = nearest_class(features.reshape(-1, features.shape[-1]), class_embeddings, class_offsets)
    labels = labels.reshape(shape).to(torch.uint8)
    return torch.where(occupied, labels, torch.full_like(labels, FREE_LABEL))


def occupied_voxels(probability: Tensor, surface_offset: Tensor, threshold: float,
                    free_space_margin: float | None = None) -> Tensor:
    """Occupied = probability above ``threshold``, except, with a ``free_space_margin``, voxels more than that many
    metres in front of a camera's rendered depth (``surface_offset`` below ``-margin``): a camera sees through them,
    so they are free whatever their density. Rendered depth integrates the whole ray, which is why it can overrule
    a voxel's density; the margin keeps the surface's own voxels (depth is ~0.2 m off at a 0.4 m voxel)."""
    occupied = probability > threshold
    if free_space_margin is not None:
        occupied &= ~(surface_offset < -free_space_margin)
    return occupied
