"""The compiled CPU submanifold convolution equals spconv's SubMConv3d: neighbour table, forward, both gradients,
float64 gradcheck, and the shipped checkpoint's voxel convolutions on a real frame's field."""

from __future__ import annotations

import warnings

import pytest
import torch

from distillnerf import cpu_kernels, submanifold
from distillnerf.voxels import HierarchicalVoxelConv, SparseResidualNet, VoxelLevel, uses_cpu_kernel

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import spconv.pytorch as spconv


def test_kernel_is_built():
    # make setup / pip install --no-build-isolation -e model compile it; without it the CPU falls back (slower)
    assert cpu_kernels.available(), cpu_kernels.ERROR
    assert uses_cpu_kernel(torch.zeros(1, 3), 32)
    assert not uses_cpu_kernel(torch.zeros(1, 3), 128)  # wide layers: spconv is faster there
    assert not uses_cpu_kernel(torch.zeros(1, 3, dtype=torch.bfloat16))  # CPU autocast's dtype goes to spconv


def random_level(resolution: int, voxels: int, channels: int, batch_size: int, seed: int,
                 dtype=torch.float32) -> VoxelLevel:
    g = torch.Generator().manual_seed(seed)
    # a thick slab, so most voxels have many neighbours, and the grid's faces are occupied (edge handling)
    index = torch.randint(0, resolution, (voxels, 3), generator=g)
    index[:, 2] = torch.randint(0, 3, (voxels,), generator=g) * (resolution - 1) // 2
    batch = torch.randint(0, batch_size, (voxels,), generator=g)
    values = torch.randn(voxels, channels, generator=g, dtype=dtype)
    return VoxelLevel.from_points(batch, index, values, resolution, batch_size)


def brute_force_neighbours(level: VoxelLevel) -> torch.Tensor:
    rows = {tuple(v): i for i, v in enumerate(level.indices.tolist())}
    table = torch.full((len(rows), 27), -1, dtype=torch.int32)
    for i, (b, x, y, z) in enumerate(level.indices.tolist()):
        for k in range(27):
            d = (k // 9 - 1, (k // 3) % 3 - 1, k % 3 - 1)
            table[i, k] = rows.get((b, x + d[0], y + d[1], z + d[2]), -1)
    return table


@pytest.mark.parametrize("batch_size", [1, 3])
def test_neighbour_table_equals_brute_force(batch_size):
    level = random_level(8, 600, 2, batch_size, seed=batch_size)
    table = submanifold.neighbour_table(level.keys, level.indices, level.resolution)
    assert table.dtype == torch.int32 and table.shape == (level.keys.numel(), 27)
    assert torch.equal(table, brute_force_neighbours(level))
    # other batch entries are never neighbours, and each voxel is its own centre
    assert torch.equal(table[:, 13], torch.arange(level.keys.numel(), dtype=torch.int32))


def spconv_reference(level: VoxelLevel, conv: spconv.SubMConv3d, batch_size: int, features: torch.Tensor):
    conv.algo = spconv.ConvAlgo.Native
    r = level.resolution
    return conv(spconv.SparseConvTensor(features, level.indices, [r, r, r], batch_size)).features


# the cpu model's widths (17 <-> 32, coarse 34 -> 32), the paper model's (33 -> 128 -> 33), whole vectors plus one
# dot-product column (17, 33, 9 outputs), and odd ones that take the any-width path
@pytest.mark.parametrize("c_in,c_out", [(17, 32), (32, 17), (34, 32), (33, 128), (128, 33), (16, 9), (5, 3),
                                        (3, 57)])
def test_forward_and_gradients_equal_spconv(c_in, c_out):
    batch_size = 2
    level = random_level(12, 1500, c_in, batch_size, seed=c_in * 100 + c_out)
    torch.manual_seed(c_out)
    conv = spconv.SubMConv3d(c_in, c_out, 3, bias=False, indice_key="t", algo=spconv.ConvAlgo.Native)
    grad = torch.randn(level.keys.numel(), c_out)

    x_ref = level.features.clone().requires_grad_()
    out_ref = spconv_reference(level, conv, batch_size, x_ref)
    out_ref.backward(grad)
    weight_grad_ref = conv.weight.grad.clone()
    conv.weight.grad = None

    x = level.features.clone().requires_grad_()
    out = submanifold.submanifold_conv(x, conv.weight, level.neighbours())
    out.backward(grad)

    scale = float(out_ref.detach().abs().max())
    assert torch.allclose(out, out_ref, atol=2e-6 * scale, rtol=1e-5)
    assert torch.allclose(x.grad, x_ref.grad, atol=2e-6 * float(x_ref.grad.abs().max()), rtol=1e-5)
    assert torch.allclose(conv.weight.grad, weight_grad_ref, atol=2e-6 * float(weight_grad_ref.abs().max()), rtol=1e-5)


def test_gradcheck_in_float64():
    level = random_level(5, 60, 3, 2, seed=7, dtype=torch.float64)
    x = level.features.clone().requires_grad_()
    weight = torch.randn(4, 3, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    neighbours = level.neighbours()
    assert torch.autograd.gradcheck(lambda f, w: submanifold.submanifold_conv(f, w, neighbours), (x, weight))


# the fused bias and ReLU, on the vector kernels (with and without the dot-product column) and the any-width path
@pytest.mark.parametrize("c_in,c_out", [(17, 32), (32, 17), (5, 3)])
def test_fused_bias_and_relu_equal_separate_ops(c_in, c_out):
    level = random_level(12, 1500, c_in, 2, seed=c_in + c_out)
    torch.manual_seed(c_in)
    weight = torch.randn(c_out, 3, 3, 3, c_in, requires_grad=True)
    bias = torch.randn(c_out, requires_grad=True)
    grad = torch.randn(level.keys.numel(), c_out)
    neighbours = level.neighbours()
    results = []
    for fused in (True, False):
        x = level.features.clone().requires_grad_()
        out = submanifold.submanifold_conv(x, weight, neighbours, bias, relu=True) if fused else \
            torch.relu(submanifold.submanifold_conv(x, weight, neighbours) + bias)
        grads = torch.autograd.grad(out, (x, weight, bias), grad)
        results.append((out, *grads))
    assert bool((results[0][0] == 0).any()) and bool((results[0][0] > 0).any())  # the ReLU clips some, not all
    for fused, separate in zip(*results):
        torch.testing.assert_close(fused, separate, rtol=1e-5, atol=2e-6 * float(separate.detach().abs().max()))


def test_gradcheck_with_bias_and_relu_in_float64():
    level = random_level(5, 60, 3, 2, seed=8, dtype=torch.float64)
    x = level.features.clone().requires_grad_()
    weight = torch.randn(4, 3, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    neighbours = level.neighbours()
    assert torch.autograd.gradcheck(
        lambda f, w, b: submanifold.submanifold_conv(f, w, neighbours, b, relu=True), (x, weight, bias))


def test_neighbour_table_is_built_once_per_level_and_shared():
    level = random_level(8, 200, 4, 1, seed=3)
    first = level.neighbours()
    assert level.neighbours() is first
    assert level.with_features(level.features * 2).neighbours() is first  # same voxels, same table


def test_bad_inputs_are_clear_errors():
    level = random_level(6, 50, 4, 1, seed=5)
    table = level.neighbours().by_voxel
    weight = torch.randn(27, 4, 8)
    kernels = cpu_kernels.kernels()
    with pytest.raises(RuntimeError, match="neighbours must be int32"):
        kernels.conv_forward(level.features, weight, table[:-1])
    with pytest.raises(RuntimeError, match="weight must be"):
        kernels.conv_forward(level.features, torch.randn(27, 5, 8), table)
    with pytest.raises(RuntimeError, match="keys must be"):
        kernels.neighbour_table(level.keys.int(), level.indices, 6)


def test_residual_net_equals_its_spconv_path(monkeypatch):
    """The module's two CPU paths (kernel, spconv fallback) give the same values and gradients."""
    torch.manual_seed(0)
    level = random_level(16, 3000, 17, 2, seed=11)
    net = SparseResidualNet(17, 32, 17, 2, "fine")
    for bias in net.biases:
        torch.nn.init.normal_(bias)
    x = level.features.clone().requires_grad_()
    out = net(level.with_features(x), 2)
    out.square().sum().backward()
    grads = {name: p.grad.clone() for name, p in net.named_parameters()}
    net.zero_grad()
    monkeypatch.setattr(cpu_kernels, "_module", None)  # as where the extension is not built
    x_ref = level.features.clone().requires_grad_()
    out_ref = net(level.with_features(x_ref), 2)
    out_ref.square().sum().backward()
    assert torch.allclose(out, out_ref, atol=1e-5)
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-4)
    for name, p in net.named_parameters():
        assert torch.allclose(grads[name], p.grad, rtol=1e-4, atol=1e-4 * float(p.grad.abs().max())), name


@pytest.mark.slow
def test_shipped_checkpoint_field_convolves_as_with_spconv(monkeypatch):
    """The shipped model's voxel convolutions on the field of a frame on the nuScenes rig: the kernel and spconv
    agree on both levels (the field's voxels are those the trained depths lift)."""
    import numpy as np

    from distillnerf.checkpoint import load_checkpoint, shipped_checkpoint
    from distillnerf.rig import load_rig

    model, config, _ = load_checkpoint(str(shipped_checkpoint("cpu")))
    model.eval()
    width, height = config.input_size
    rig = load_rig("nuscenes").resized(width, height)
    cams = [rig.camera(name) for name in config.camera_names]
    images = torch.rand(1, len(cams), 3, height, width, generator=torch.Generator().manual_seed(0))
    intrinsics = torch.tensor(np.stack([c.intrinsics for c in cams]), dtype=torch.float32)[None]
    cam_to_ego = torch.tensor(np.stack([c.cam_to_ego for c in cams]), dtype=torch.float32)[None]
    levels = {}
    convolve = HierarchicalVoxelConv.forward

    def capture(self, coarse, fine, batch_size):
        levels.update(coarse=coarse, fine=fine)
        return convolve(self, coarse, fine, batch_size)

    monkeypatch.setattr(HierarchicalVoxelConv, "forward", capture)
    with torch.no_grad():
        model(images, intrinsics, cam_to_ego)
    monkeypatch.setattr(HierarchicalVoxelConv, "forward", convolve)
    coarse, fine = levels["coarse"], levels["fine"]
    assert fine.keys.numel() > 50_000  # trained depths spread the lift: the field the kernel is for
    with torch.no_grad():
        kernel = model.voxel_conv(coarse, fine, 1)
        monkeypatch.setattr(cpu_kernels, "_module", None)
        reference = model.voxel_conv(VoxelLevel(coarse.resolution, coarse.keys, coarse.indices, coarse.features, 1),
                                     VoxelLevel(fine.resolution, fine.keys, fine.indices, fine.features, 1), 1)
    for ours, theirs in zip(kernel, reference):
        assert torch.allclose(ours.features, theirs.features, atol=1e-4 * float(theirs.features.abs().max()))
