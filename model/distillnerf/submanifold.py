"""Submanifold 3x3x3 sparse convolution on the CPU, with the weights of spconv's ``SubMConv3d``.

spconv runs the CPU with its ``Native`` algorithm: per kernel offset it gathers the input rows, multiplies and
scatter-adds, which at the `cpu` model's widths (17 and 32 channels) is bound by memory traffic, and its backward
is per-offset matrix products of very tall, thin operands. The compiled kernel here
(``csrc/submanifold_cpu.cpp``, in :mod:`distillnerf.cpu_kernels`) works output-stationary from a neighbour table: each voxel
gathers its at most 27 neighbours and accumulates in registers; the input gradient is the same gather with the
kernel mirrored, the weight gradient a register-blocked reduction per offset. Same values as spconv (float
tolerance, ``test/test_model_submanifold.py``); CUDA keeps spconv's implicit GEMM.

The neighbour table ``[V, 27]`` int32 (kernel offset ``((dx + 1) * 3 + (dy + 1)) * 3 + (dz + 1)``, -1 where empty)
is spconv's rulebook in another layout, built once per level from its sorted keys and shared by every convolution
of that level, forward and backward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from distillnerf import cpu_kernels

#: dtypes the compiled kernel takes (others, such as CPU autocast's bfloat16, go to spconv)
KERNEL_DTYPES = (torch.float32, torch.float64)
#: Widest layer (input or output channels) the model sends to the kernel. It keeps a voxel's accumulators in
#: registers, which pays while they fit; at 128 channels spconv's per-offset matrix products are faster.
KERNEL_MAX_CHANNELS = 64


def neighbour_table(keys: Tensor, indices: Tensor, resolution: int) -> Tensor:
    """``[V, 27]`` int32 rows of each voxel's neighbours (-1 = empty) from sorted unique linear keys ``[V]`` and
    their ``(batch, x, y, z)`` indices ``[V, 4]`` int32 on a ``resolution``^3 grid."""
    return cpu_kernels.kernels().neighbour_table(keys.contiguous(), indices.to(torch.int32).contiguous(), int(resolution))


class Neighbours:
    """A level's neighbour table in both layouts the kernels read: by voxel ``[V, 27]`` (forward, input
    gradient) and by kernel offset ``[27, V]`` (weight gradient, built on first use)."""

    def __init__(self, by_voxel: Tensor):
        self.by_voxel = by_voxel
        self._by_offset: Tensor | None = None

    @property
    def by_offset(self) -> Tensor:
        if self._by_offset is None:
            self._by_offset = self.by_voxel.t().contiguous()
        return self._by_offset


class _SubmanifoldConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features: Tensor, weight: Tensor, bias: Tensor | None, neighbours: Neighbours,
                relu: bool) -> Tensor:
        out = cpu_kernels.kernels().conv_forward(features, weight, neighbours.by_voxel, bias, relu)
        ctx.save_for_backward(features, weight, out if relu else None)
        ctx.neighbours, ctx.relu, ctx.has_bias = neighbours, relu, bias is not None
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        features, weight, out = ctx.saved_tensors
        neighbours: Neighbours = ctx.neighbours
        grad = grad.contiguous()
        if ctx.relu:
            grad = grad * (out > 0)
        grad_features = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            # voxel i feeds output o = i - d through offset d, i.e. o is i's neighbour at -d (offset 26 - k)
            mirrored = weight.flip(0).transpose(1, 2).contiguous()
            grad_features = cpu_kernels.kernels().conv_forward(grad, mirrored, neighbours.by_voxel)
        if ctx.needs_input_grad[1]:
            grad_weight = cpu_kernels.kernels().conv_backward_weight(features, grad, neighbours.by_offset)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(0)
        return grad_features, grad_weight, grad_bias, None, None


def submanifold_conv(features: Tensor, weight: Tensor, neighbours: Neighbours, bias: Tensor | None = None,
                     relu: bool = False) -> Tensor:
    """``features [V, C_in]`` convolved with spconv-layout ``weight [C_out, 3, 3, 3, C_in]`` over the level's
    ``neighbours`` -> ``[V, C_out]``, plus ``bias [C_out]`` and then a ReLU when asked (applied as each row is
    written: no extra passes over the output); differentiable in features, weight and bias."""
    c_out, c_in = weight.shape[0], weight.shape[-1]
    per_offset = weight.permute(1, 2, 3, 4, 0).reshape(27, c_in, c_out)
    if bias is not None:
        bias = bias.to(features.dtype)
    return _SubmanifoldConv.apply(features.contiguous(), per_offset.to(features.dtype), bias, neighbours, relu)
