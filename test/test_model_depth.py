"""The stage-2 candidate network without its volume (depth.candidate_convolution) equals the two Conv3d it stands
for, values and gradients, at every candidate count (the ends of the candidate axis are where it differs from a
plain 2D convolution)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distillnerf.depth import candidate_convolution


def reference(reduced, depth_code, first, second):
    k = depth_code.shape[1]
    volume = torch.cat([reduced[:, :, None].expand(-1, -1, k, -1, -1), depth_code[:, None]], dim=1)
    return second(torch.relu(first(volume)))


@pytest.mark.parametrize("candidates", [1, 2, 3, 7, 12])
def test_candidate_convolution_equals_the_volume_convolutions(candidates):
    torch.manual_seed(candidates)
    channels, batch, height, width = 5, 2, 6, 9
    first = nn.Conv3d(channels + 1, 4, 3, 1, 1).double()
    second = nn.Conv3d(4, 2, 3, 1, 1).double()
    reduced = torch.randn(batch, channels, height, width, dtype=torch.float64, requires_grad=True)
    depth_code = torch.rand(batch, candidates, height, width, dtype=torch.float64)
    grad = torch.randn(batch, 2, candidates, height, width, dtype=torch.float64)

    expected = reference(reduced, depth_code, first, second)
    expected_grads = torch.autograd.grad(expected, [reduced, first.weight, first.bias, second.weight, second.bias],
                                         grad)
    got = candidate_convolution(reduced, depth_code, first, second)
    got_grads = torch.autograd.grad(got, [reduced, first.weight, first.bias, second.weight, second.bias], grad)

    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    for g, e in zip(got_grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


def test_candidate_convolution_in_float32_matches_within_rounding():
    torch.manual_seed(0)
    first, second = nn.Conv3d(9, 8, 3, 1, 1), nn.Conv3d(8, 2, 3, 1, 1)
    reduced, depth_code = torch.randn(6, 8, 16, 28), torch.rand(6, 12, 16, 28)
    with torch.no_grad():
        expected = reference(reduced, depth_code, first, second)
        got = candidate_convolution(reduced, depth_code, first, second)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))
