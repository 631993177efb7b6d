"""Volume rendering: analytic depths of hand-built densities and of a hand-built sparse voxel field."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from distillnerf.config import load_model_config
from distillnerf.depth import candidate_depths, depth_bin_edges, expected_depth, volume_render_weights
from distillnerf.field import FieldHeads, SparseVoxelField
from distillnerf.renderer import ray_samples, render_rays
from distillnerf.voxels import VoxelLevel, linear_key, decode_keys


TINY = load_model_config("tiny")


def test_constant_density_after_a_wall_gives_exponential_mean():
    # density sigma for t >= a: the stopping distance is a + Exp(sigma), expected depth a + 1/sigma
    t = torch.arange(0.0, 200.0, 0.002, dtype=torch.float64) + 0.001
    a, sigma = 10.0, 0.5
    density = torch.where(t >= a, sigma, 0.0)
    deltas = torch.full_like(t, 0.002)
    weights, opacity = volume_render_weights(density, deltas)
    assert abs(float(opacity) - 1.0) < 1e-9
    assert abs(float(expected_depth(weights, t, opacity, 200.0)) - (a + 1.0 / sigma)) < 5e-3


def test_empty_ray_reads_far_and_opaque_wall_reads_its_distance():
    t = torch.linspace(0.05, 99.95, 1000, dtype=torch.float64)
    deltas = torch.full_like(t, 0.1)
    weights, opacity = volume_render_weights(torch.zeros_like(t), deltas)
    assert float(opacity) == 0.0 and float(expected_depth(weights, t, opacity, 120.0)) == 120.0
    weights, opacity = volume_render_weights(torch.where(t > 42.0, 1e4, 0.0), deltas)
    assert abs(float(expected_depth(weights, t, opacity, 120.0)) - 42.05) < 1e-6


def test_depth_bins_and_candidates_follow_the_paper():
    paper = load_model_config("paper")
    edges = depth_bin_edges(paper)
    assert edges.numel() == 287 and abs(float(edges[0]) - 0.1) < 1e-6 and float(edges[-1]) == 120.0
    assert torch.allclose(edges[1:251] - edges[:250], torch.tensor(0.2), atol=1e-4)
    assert bool((edges[1:] > edges[:-1]).all())
    d = torch.tensor([1.0, 10.0, 40.0])
    c = candidate_depths(d, paper)
    assert c.shape == (3, 15)
    steps = torch.tensor([0.05, 0.25, 0.3])  # clamp(0.025 d, 0.05, 0.3)
    assert torch.allclose(c, d[:, None] + torch.arange(-8, 7)[None] * steps[:, None])


def level(resolution: int, index: torch.Tensor) -> VoxelLevel:
    keys, _ = torch.sort(linear_key(torch.zeros(len(index), dtype=torch.long), index, resolution))
    return VoxelLevel(resolution, keys, decode_keys(keys, resolution), torch.zeros(len(index), TINY.level_channels + 1))


def hand_built_field(sigma: float) -> tuple[SparseVoxelField, float]:
    """Fine voxels along +x (y, z voxel 32 of 64) from contracted x = 0.125 (7.81 m) to 0.5625 (35.2 m), inside
    coarse parents 18..24 (y, z voxel 16 of 32) of zero density, plus a dense coarse voxel with no fine children."""
    rf, rc = TINY.fine_resolution, TINY.coarse_resolution
    ix = torch.arange(36, 50)
    fine = level(rf, torch.stack([ix, torch.full_like(ix, rf // 2), torch.full_like(ix, rf // 2)], dim=-1))
    cx = torch.arange(18, 25)
    coarse_index = torch.stack([cx, torch.full_like(cx, rc // 2), torch.full_like(cx, rc // 2)], dim=-1)
    coarse = level(rc, torch.cat([coarse_index, torch.tensor([[18, 10, 16]])]))
    field = SparseVoxelField(coarse, fine, 1, 50.0, 6.4, 0.8)
    n, m = fine.keys.numel(), coarse.keys.numel()
    coarse_density = torch.zeros(m)
    coarse_density[int(coarse.lookup(torch.zeros(1, dtype=torch.long), torch.tensor([[18, 10, 16]])))] = 1e3
    field.decoded = {"density": torch.cat([coarse_density, torch.full((n,), sigma), torch.zeros(1)]),
                     "render": torch.cat([torch.zeros(m, 2), torch.ones(n, 2), torch.zeros(1, 2)])}
    wall = (-1.0 + 36 * 2.0 / rf) * 50.0 / 0.8
    return field, wall


def test_density_complement_prefers_fine_then_coarse_then_empty():
    field, _ = hand_built_field(5.0)
    points = torch.tensor([[20.0, 0.1, 0.05],    # fine voxel
                           [9.4, -21.25, 0.08],  # coarse voxel (18, 10, 16) without fine children
                           [20.0, 5.0, 0.05]])   # nothing
    rows = field.nearest_rows(torch.zeros(3, dtype=torch.long), field.contract(points))
    density = field.decoded["density"][rows]
    assert density.tolist() == [5.0, 1e3, 0.0]


def test_rendering_a_hand_built_voxel_field_gives_the_analytic_depth():
    heads = FieldHeads(TINY)
    t = (torch.arange(0.0, 60.0, 0.005) + 0.0025)[None]
    origin = torch.tensor([[0.0, 0.1, 0.05]])
    direction = torch.tensor([[1.0, 0.0, 0.0]])
    batch = torch.zeros(1, dtype=torch.long)
    for sigma, expected in ((1e3, 0.0), (0.5, 2.0)):
        field, wall = hand_built_field(sigma)
        out = render_rays(heads, field, batch, origin, direction, t, 120.0, ("render",))
        assert abs(float(out["distance"][0]) - (wall + expected)) < 0.02
        assert abs(float(out["opacity"][0]) - 1.0) < 1e-4
        assert torch.allclose(out["render"][0], out["opacity"][0].expand(2), atol=1e-5)  # unit features
    # a ray that misses the voxels sees nothing
    out = render_rays(heads, field, batch, torch.tensor([[0.0, 5.0, 0.05]]), direction, t, 120.0, ("render",))
    assert float(out["opacity"][0]) == 0.0 and float(out["distance"][0]) == 120.0


def test_ray_samples_are_sorted_bins_plus_fine_samples_around_the_best_bin():
    edges = depth_bin_edges(TINY)
    weights = torch.zeros(2, TINY.num_bins)
    weights[0, 3], weights[1, 10] = 1.0, 1.0
    t = ray_samples(edges, weights, TINY, jitter=False)
    assert t.shape == (2, TINY.num_bins + TINY.fine_samples)
    assert bool((t[:, 1:] >= t[:, :-1]).all())
    centre = 0.5 * (edges[3] + edges[4])
    near = t[0][(t[0] - centre).abs() <= TINY.fine_spacing * TINY.fine_samples / 2]
    assert near.numel() >= TINY.fine_samples
    jittered = ray_samples(edges, weights, TINY, jitter=True)
    lower, upper = edges[:-1], edges[1:]
    assert not torch.equal(jittered, t)
    bins_only = ray_samples(edges, weights, replace(TINY, fine_samples=0), jitter=True)
    assert bool(((bins_only >= lower) & (bins_only <= upper)).all())
    assert not math.isnan(float(t.sum()))
