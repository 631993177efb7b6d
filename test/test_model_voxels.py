"""Sparse voxels: quantisation, scatter-mean against a reference loop, lookup, and spconv against dense conv3d."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distillnerf import voxels
from distillnerf.voxels import (HierarchicalVoxelConv, LiftedPoints, SparseResidualNet, VoxelLevel, decode_keys,
                                linear_key, pool_lifted, quantise, scatter_mean, voxel_centres)


def test_quantise_and_centres_round_trip():
    index = torch.randint(0, 16, (100, 3))
    centres = voxel_centres(index, 16)
    assert torch.equal(quantise(centres, 16), index)
    assert torch.equal(quantise(torch.tensor([[-1.0, 1.0, 0.999999]]), 16), torch.tensor([[0, 15, 15]]))


def test_scatter_mean_equals_reference_loop():
    g = torch.Generator().manual_seed(1)
    keys = torch.randint(0, 20, (300,), generator=g)
    values = torch.randn(300, 5, generator=g, dtype=torch.float64)
    unique, means, counts = scatter_mean(keys, values)
    assert torch.equal(unique, torch.sort(torch.unique(keys)).values)
    for key, mean, count in zip(unique, means, counts):
        rows = values[keys == key]
        assert int(count) == rows.shape[0]
        assert torch.allclose(mean, rows.mean(dim=0))


def test_scatter_mean_pools_column_blocks_as_if_concatenated():
    g = torch.Generator().manual_seed(2)
    keys = torch.randint(0, 50, (500,), generator=g)
    points = torch.randn(500, 9, generator=g)
    whole = scatter_mean(keys, torch.cat([points[:, :4], points[:, 8:]], 1))
    blocks = scatter_mean(keys, points[:, :4], points[:, 8:])  # strided views of one tensor, no copy
    assert all(torch.equal(a, b) for a, b in zip(whole, blocks))
    assert blocks[1].shape == (torch.unique(keys).numel(), 5)


def test_lifted_points_pool_as_their_materialised_features():
    # the lift's pooling reads each point's pixel row instead of building probability x feature per point: the
    # means and every gradient equal the mean of the materialised [P, C] products
    g = torch.Generator().manual_seed(3)
    pixels, k, channels = 40, 5, 8
    table = torch.randn(pixels, 2 * channels, generator=g, dtype=torch.float64, requires_grad=True)
    probability = torch.rand(pixels * k, generator=g, dtype=torch.float64, requires_grad=True)
    density = torch.randn(pixels * k, generator=g, dtype=torch.float64, requires_grad=True)
    pixel = torch.arange(pixels).repeat_interleave(k)  # a pixel's candidates are adjacent, as the model lifts them
    keys = torch.randint(0, 30, (pixels * k,), generator=g)
    lifted = LiftedPoints(torch.zeros(pixels * k, 3), torch.zeros(pixels * k, dtype=torch.long), probability, density,
                          pixel, table)
    columns = slice(channels, 2 * channels)  # a strided column view of the table, as the fine level reads it
    unique, pooled = pool_lifted(keys, lifted, columns)
    materialised = torch.cat([probability[:, None] * table[pixel][:, columns], density[:, None]], dim=1)
    unique_ref, reference, _ = scatter_mean(keys, materialised)
    assert torch.equal(unique, unique_ref) and pooled.shape == (unique.numel(), channels + 1)
    assert torch.allclose(pooled, reference)
    weights = torch.randn(pooled.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((pooled * weights).sum(), (table, probability, density))
    grads_ref = torch.autograd.grad((reference * weights).sum(), (table, probability, density))
    assert all(torch.allclose(a, b) for a, b in zip(grads, grads_ref))
    assert grads[0][:, :channels].abs().max() == 0  # the other level's columns get nothing


@pytest.mark.parametrize("dense", [True, False])
def test_level_lookup_finds_occupied_voxels_only(dense, monkeypatch):
    if not dense:  # force the binary-search path used by large grids
        monkeypatch.setattr(voxels, "DENSE_LOOKUP_LIMIT", 0)
    batch = torch.tensor([0, 0, 1, 1])
    index = torch.tensor([[1, 2, 3], [1, 2, 3], [4, 5, 6], [0, 0, 0]])
    level = VoxelLevel.from_points(batch, index, torch.arange(8.0).reshape(4, 2), 8, batch_size=2)
    assert level.keys.numel() == 3
    assert torch.equal(decode_keys(level.keys, 8).long(), torch.tensor([[0, 1, 2, 3], [1, 0, 0, 0], [1, 4, 5, 6]]))
    rows = level.lookup(torch.tensor([0, 1, 0, 1]), torch.tensor([[1, 2, 3], [4, 5, 6], [4, 5, 6], [1, 2, 3]]))
    assert rows.tolist() == [0, 2, -1, -1]
    assert torch.allclose(level.features[0], torch.tensor([1.0, 2.0]))  # mean of the two points in voxel (1,2,3)


def random_level(resolution: int, voxels: int, channels: int, batch_size: int, seed: int) -> VoxelLevel:
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(0, resolution, (voxels, 3), generator=g)
    batch = torch.randint(0, batch_size, (voxels,), generator=g)
    return VoxelLevel.from_points(batch, index, torch.randn(voxels, channels, generator=g), resolution)


def dense_reference(net: SparseResidualNet, level: VoxelLevel, batch_size: int) -> torch.Tensor:
    """The same network with dense conv3d, re-masked to the active sites after every layer (submanifold)."""
    r, c = level.resolution, level.features.shape[1]
    idx = level.indices.long()
    mask = torch.zeros(batch_size, 1, r, r, r)
    mask[idx[:, 0], 0, idx[:, 1], idx[:, 2], idx[:, 3]] = 1.0
    x = torch.zeros(batch_size, c, r, r, r)
    x[idx[:, 0], :, idx[:, 1], idx[:, 2], idx[:, 3]] = level.features
    for i, (conv, bias) in enumerate(zip(net.convs, net.biases)):
        weight = conv.weight.permute(0, 4, 1, 2, 3)  # spconv KRSC [out, k, k, k, in] -> [out, in, k, k, k]
        x = (F.conv3d(x, weight, padding=1) + bias[None, :, None, None, None]) * mask
        if i < len(net.convs) - 1:
            x = torch.relu(x)
    return x[idx[:, 0], :, idx[:, 1], idx[:, 2], idx[:, 3]] + net.skip(level.features)


def test_sparse_convolutions_match_dense_conv3d():
    torch.manual_seed(0)
    level = random_level(10, 400, 5, 2, seed=2)
    net = SparseResidualNet(5, 7, 4, 3, "test")
    for bias in net.biases:
        torch.nn.init.normal_(bias)
    with torch.no_grad():
        sparse = net(level, 2)
        dense = dense_reference(net, level, 2)
    assert sparse.shape == (level.keys.numel(), 4)
    assert torch.allclose(sparse, dense, atol=1e-5)


def test_hierarchical_conv_rewrites_the_coarse_level():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    fine_index = torch.randint(0, 16, (200, 3), generator=g)
    batch = torch.randint(0, 2, (200,), generator=g)
    values = torch.randn(200, 3, generator=g)
    fine = VoxelLevel.from_points(batch, fine_index, values, 16)
    coarse = VoxelLevel.from_points(batch, fine_index // 4, values, 4)
    net = HierarchicalVoxelConv(3, 8, 2, 2)
    coarse_out, fine_out = net(coarse, fine, 2)
    assert torch.equal(coarse_out.keys, coarse.keys) and torch.equal(fine_out.keys, fine.keys)
    assert coarse_out.features.shape == coarse.features.shape
    # Changing one fine voxel changes its coarse parent's output: information flows fine -> coarse.
    bumped = fine.with_features(fine.features.clone())
    bumped.features[0] += 10.0
    coarse_bumped, _ = net(coarse, bumped, 2)
    parent = fine.indices[0].long()
    row = int(torch.searchsorted(coarse.keys, linear_key(parent[:1], parent[None, 1:] // 4, 4)))
    assert not torch.allclose(coarse_bumped.features[row], coarse_out.features[row])
