"""Sparse hierarchical voxels: quantise contracted points into two grids over [-1, 1]^3, mean-pool the points of
each voxel (across cameras and candidates), and run sparse 3x3x3 convolutions fine-to-coarse (spconv).

A level is a sorted list of occupied voxels (batch, ix, iy, iz) with one feature row each. The two levels together
are the field's occupancy grid: :class:`TwoLevelIndex` finds a point's voxel in O(1) (a dense row volume for the
coarse level, a block of child rows per occupied coarse voxel for the fine level), so empty space costs one gather.
The convolutions keep spconv's ``SubMConv3d`` weights (and checkpoints): on CUDA spconv runs them with its
implicit-GEMM algorithm; on the CPU the compiled kernel of :mod:`distillnerf.submanifold` does, from a neighbour
table built once per level (spconv's CPU ``Native`` algorithm only where that kernel is not built).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

with warnings.catch_warnings():  # spconv 2.3 still uses the deprecated torch.cuda.amp decorators
    warnings.simplefilter("ignore", FutureWarning)
    import spconv.pytorch as spconv

from distillnerf import cpu_kernels, submanifold

#: Levels with at most this many grid cells (over the batch) look voxels up in a dense row table (int32).
DENSE_LOOKUP_LIMIT = 1 << 23


def quantise(coords: Tensor, resolution: int) -> Tensor:
    """Voxel index [..., 3] (int64) of contracted coordinates in [-1, 1]^3 on a ``resolution``^3 grid."""
    # clamp in float first: the value is then non-negative, where truncation (.long()) equals floor
    half = 0.5 * resolution
    return (coords * half + half).clamp_(0.0, resolution - 1).long()


def voxel_centres(index: Tensor, resolution: int) -> Tensor:
    """Contracted coordinates of voxel centres."""
    return (index.float() + 0.5) * (2.0 / resolution) - 1.0


def linear_key(batch: Tensor, index: Tensor, resolution: int) -> Tensor:
    """One int64 key per (batch, ix, iy, iz), ordered batch-major then x, y, z."""
    r = resolution
    return ((batch * r + index[..., 0]) * r + index[..., 1]) * r + index[..., 2]


def key_segments(keys: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Points grouped by key: (sorted unique keys [V], the points in key order [P], points per key [V], where each
    key's run starts in that order [V]), the bags of the pooling ``embedding_bag`` calls."""
    # int32 keys sort about 1.4x faster than int64 on the CPU; a grid's keys fit unless it is huge
    narrow = keys.dtype == torch.int64 and keys.numel() > 0 and int(keys.max()) <= torch.iinfo(torch.int32).max
    ordered, order = torch.sort(keys.int() if narrow else keys)
    unique, counts = torch.unique_consecutive(ordered, return_counts=True)
    return unique.to(keys.dtype), order, counts, torch.cumsum(counts, 0) - counts


def scatter_mean(keys: Tensor, *values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean of ``values`` [P, C] per distinct key -> (sorted unique keys [V], means [V, C], counts [V]). Several
    value tensors (column blocks, possibly strided views of one point tensor) are pooled side by side, as if
    concatenated, without copying them into one."""
    unique, order, counts, starts = key_segments(keys)
    # one bag per voxel over the points in key order: a gather-mean with no [P, C] sum buffer or scatter
    means = [F.embedding_bag(order, block, starts, mode="mean") for block in values]
    return unique, means[0] if len(means) == 1 else torch.cat(means, dim=1), counts


@dataclass(frozen=True)
class LiftedPoints:
    """Depth candidates lifted to 3D, their features kept per pixel: point i carries ``probability[i]`` x
    ``table[pixel[i]]`` and ``density_logit[i]``. A pixel's K candidates share its feature row, so the [P, C]
    products are never built: pooling reads the table through ``pixel``."""

    points: Tensor  # [P, 3] ego metres
    batch: Tensor  # [P] batch entry
    probability: Tensor  # [P]
    density_logit: Tensor  # [P]
    pixel: Tensor  # [P] row of ``table``
    table: Tensor  # [pixels, C] image features (column views select a level's channels)


def pool_lifted(keys: Tensor, lifted: LiftedPoints, columns: slice) -> tuple[Tensor, Tensor]:
    """Per distinct key: the mean over its points of probability x the pixel feature's ``columns``, then the mean
    density logit -> (sorted unique keys [V], features [V, C + 1]). The feature mean is one weighted
    ``embedding_bag`` sum over the pixel table (weights: probability) over the voxel's point count, so neither the
    forward nor the backward touches a [P, C] tensor."""
    unique, order, counts, starts = key_segments(keys)
    features = F.embedding_bag(lifted.pixel[order], lifted.table[:, columns], starts, mode="sum",
                               per_sample_weights=lifted.probability[order])
    features = features / counts[:, None].to(features.dtype)
    density = F.embedding_bag(order, lifted.density_logit[:, None], starts, mode="mean")
    return unique, torch.cat([features, density], dim=1)


@dataclass
class VoxelLevel:
    """One sparse level: ``keys`` sorted, ``indices`` [V, 4] int32 (batch, ix, iy, iz), ``features`` [V, C]."""

    resolution: int
    keys: Tensor
    indices: Tensor
    features: Tensor
    batch_size: int = 0  # 0 = unknown: lookups then use binary search only
    _table: Tensor | None = field(default=None, repr=False, compare=False)
    _neighbours: "submanifold.Neighbours | None" = field(default=None, repr=False, compare=False)

    @staticmethod
    def from_points(batch: Tensor, index: Tensor, values: Tensor | tuple[Tensor, ...], resolution: int,
                    batch_size: int = 0) -> "VoxelLevel":
        """Pool points (batch [P], voxel index [P,3] from :func:`quantise`, values [P,C] or column blocks of them)
        into their voxels."""
        blocks = values if isinstance(values, tuple) else (values,)
        keys, features, _ = scatter_mean(linear_key(batch, index, resolution), *blocks)
        return VoxelLevel.of_keys(keys, features, resolution, batch_size)

    @staticmethod
    def from_lifted(lifted: LiftedPoints, index: Tensor, columns: slice, resolution: int, batch_size: int = 0
                    ) -> "VoxelLevel":
        """Pool lifted depth candidates (voxel index [P,3] from :func:`quantise`) into their voxels: the table's
        ``columns`` weighted by probability, then the density logit (:func:`pool_lifted`)."""
        keys, features = pool_lifted(linear_key(lifted.batch, index, resolution), lifted, columns)
        return VoxelLevel.of_keys(keys, features, resolution, batch_size)

    @staticmethod
    def of_keys(keys: Tensor, features: Tensor, resolution: int, batch_size: int = 0) -> "VoxelLevel":
        """A level from its sorted linear keys and their features (the indices decoded from the keys)."""
        return VoxelLevel(resolution, keys, decode_keys(keys, resolution), features, batch_size)

    def lookup(self, batch: Tensor, index: Tensor) -> Tensor:
        """Row of each (batch, voxel index) in this level, or -1 where the voxel is empty."""
        return self.rows_of_keys(linear_key(batch, index, self.resolution)).long()

    def rows_of_keys(self, keys: Tensor) -> Tensor:
        """Row (int32) of each linear key (int64) in this level, or -1 where the voxel is empty: one gather in the
        dense row table for small grids, a binary search over the sorted keys otherwise."""
        if self.keys.numel() == 0:
            return torch.full(keys.shape, -1, dtype=torch.int32, device=keys.device)
        table = self.dense_rows()
        if table is not None:
            return table[keys]
        position = torch.searchsorted(self.keys, keys).clamp_(max=self.keys.numel() - 1)
        return torch.where(self.keys[position] == keys, position, -1).int()

    def dense_rows(self) -> Tensor | None:
        """Row per linear key over the whole grid (-1 = empty), built once, for grids up to DENSE_LOOKUP_LIMIT
        cells over the batch (needs ``batch_size``)."""
        size = self.batch_size * self.resolution ** 3
        if size == 0 or size > DENSE_LOOKUP_LIMIT:
            return None
        if self._table is None or self._table.numel() != size:
            table = torch.full((size,), -1, dtype=torch.int32, device=self.keys.device)
            table[self.keys] = torch.arange(self.keys.numel(), dtype=torch.int32, device=self.keys.device)
            self._table = table
        return self._table

    def neighbours(self) -> "submanifold.Neighbours":
        """The submanifold convolution's neighbour table of this level (CPU kernel), built once."""
        if self._neighbours is None:
            self._neighbours = submanifold.Neighbours(
                submanifold.neighbour_table(self.keys, self.indices, self.resolution))
        return self._neighbours

    def with_features(self, features: Tensor) -> "VoxelLevel":
        return VoxelLevel(self.resolution, self.keys, self.indices, features, self.batch_size, self._table,
                          self._neighbours)


class TwoLevelIndex:
    """O(1) nearest-voxel lookup into the stacked row table [coarse; fine; empty] of a two-level field.

    The coarse level answers from its own dense row table (:meth:`VoxelLevel.rows_of_keys`; binary search where
    that volume would exceed DENSE_LOOKUP_LIMIT cells or the level's batch size is unknown).
    ``blocks`` holds, for each occupied coarse voxel, the stacked row of each of its ratio^3 fine children: the
    fine voxel's row where one exists, else the coarse voxel's own row (the density complement). A lookup is
    therefore one gather in each table, and a point in empty coarse space never touches the fine level.
    """

    def __init__(self, coarse: VoxelLevel, fine: VoxelLevel):
        self.coarse, self.fine = coarse, fine
        self.ratio = fine.resolution // coarse.resolution
        vc, vf = coarse.keys.numel(), fine.keys.numel()
        self.empty = vc + vf
        device = coarse.keys.device
        block = self.ratio ** 3
        blocks = torch.arange(vc, dtype=torch.int32, device=device)[:, None].repeat(1, block)
        if vf:
            index = fine.indices.long()
            parent = coarse.lookup(index[:, 0], index[:, 1:] // self.ratio)
            local = index[:, 1:] % self.ratio
            blocks[parent, (local[:, 0] * self.ratio + local[:, 1]) * self.ratio + local[:, 2]] = torch.arange(
                vc, vc + vf, dtype=torch.int32, device=device)
        self.blocks = torch.cat([blocks.reshape(-1), torch.full((block,), self.empty, dtype=torch.int32,
                                                                 device=device)])

    def rows(self, batch: Tensor, coords: Tensor) -> Tensor:
        """Stacked row (int64) of each point (batch [P], contracted coords [P,3]); ``empty`` where nothing is."""
        return self.rows_of_components(batch, *coords.unbind(-1))

    def rows_of_components(self, batch: Tensor | None, x: Tensor, y: Tensor, z: Tensor) -> Tensor:
        """:meth:`rows` from contracted coordinate arrays of one shape (``batch`` broadcastable to it; None = all
        batch entry 0)."""
        return self.rows_of_cells(batch, *point_cells(x, y, z, self.fine.resolution, self.ratio))

    def rows_of_cells(self, batch: Tensor | int | None, coarse_key: Tensor, child: Tensor) -> Tensor:
        """:meth:`rows` of points given as their :func:`point_cells` (fixed points, such as the Occ3D grid's, keep
        theirs from frame to frame): one gather in the coarse row table, one in the child blocks."""
        if batch is not None:
            coarse_bits = self.coarse.resolution.bit_length() - 1
            coarse_key = coarse_key + (torch.as_tensor(batch, device=coarse_key.device).to(torch.int32)
                                       << (3 * coarse_bits))
        coarse = self.coarse.rows_of_keys(coarse_key.long())
        # empty coarse space reads the all-empty block appended after the real ones
        block = torch.where(coarse >= 0, coarse, self.coarse.keys.numel())
        ratio_bits = self.ratio.bit_length() - 1
        return self.blocks[((block << (3 * ratio_bits)) | child).long()].long()


def point_cells(x: Tensor, y: Tensor, z: Tensor, fine_resolution: int, ratio: int) -> tuple[Tensor, Tensor]:
    """(coarse voxel key of batch entry 0, int32; the fine child within it, int32) of contracted coordinates, for
    power-of-two resolutions (``ratio`` fine voxels per coarse voxel along an axis): int32 shifts and masks keep
    each pass cheap. The same rounding as :func:`quantise`: clamp in float, then truncate."""
    fine_bits = fine_resolution.bit_length() - 1
    ratio_bits = ratio.bit_length() - 1
    coarse_bits = fine_bits - ratio_bits
    mask = ratio - 1
    half = 0.5 * fine_resolution
    fx, fy, fz = ((c * half).add_(half).clamp_(0.0, fine_resolution - 1).to(torch.int32) for c in (x, y, z))
    key = (((fx >> ratio_bits) << coarse_bits) | (fy >> ratio_bits)) << coarse_bits | (fz >> ratio_bits)
    child = (((fx & mask) << ratio_bits | (fy & mask)) << ratio_bits) | (fz & mask)
    return key, child


def decode_keys(keys: Tensor, resolution: int) -> Tensor:
    r = resolution
    z = keys % r
    y = (keys // r) % r
    x = (keys // (r * r)) % r
    b = keys // (r * r * r)
    return torch.stack([b, x, y, z], dim=-1).int()


def select_algo(module: nn.Module, device: torch.device) -> None:
    """Use the Native algorithm on CPU (the only one spconv implements there), spconv's default on CUDA."""
    algo = spconv.ConvAlgo.Native if device.type == "cpu" else spconv.ConvAlgo.MaskImplicitGemm
    for m in module.modules():
        if isinstance(m, spconv.SubMConv3d) and m.algo != algo:
            m.algo = algo


def uses_cpu_kernel(features: Tensor, widest: int = 0) -> bool:
    """Whether a level's convolutions (``widest``: their widest input or output) run on the compiled CPU kernel,
    else on spconv: the kernel wins where channels are few (the `cpu` model: 2.5x on its fine level), spconv's
    per-offset matrix products where they are many (the `paper` model's 128: the kernel was 1.2x slower)."""
    if features.device.type != "cpu" or features.dtype not in submanifold.KERNEL_DTYPES:
        return False
    return widest <= submanifold.KERNEL_MAX_CHANNELS and cpu_kernels.available()


class SparseResidualNet(nn.Module):
    """Submanifold 3x3x3 convolutions on one level: in -> hidden (x layers) -> out, with a linear skip."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int, layers: int, key: str):
        super().__init__()
        widths = [in_channels] + [hidden] * (max(2, layers) - 1) + [out_channels]
        # spconv's fused bias is CUDA-only, so biases are added outside the convolution.
        self.convs = nn.ModuleList(
            spconv.SubMConv3d(a, b, 3, bias=False, indice_key=key, algo=spconv.ConvAlgo.Native)
            for a, b in zip(widths[:-1], widths[1:]))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(b)) for b in widths[1:])
        self.skip = nn.Linear(in_channels, out_channels)
        self.widest = max(widths)

    def forward(self, level: VoxelLevel, batch_size: int) -> Tensor:
        convolve = self._compiled(level) if uses_cpu_kernel(level.features, self.widest) else \
            self._spconv(level, batch_size)
        x = level.features
        for i, (conv, bias) in enumerate(zip(self.convs, self.biases)):
            x = convolve(conv, x, bias, i < len(self.convs) - 1)
        return x + self.skip(level.features)

    @staticmethod
    def _compiled(level: VoxelLevel):
        """Layers on the CPU kernel, over the level's neighbour table (built once, shared by every layer); the
        kernel adds the bias and applies the ReLU as it writes each row."""
        neighbours = level.neighbours()
        return lambda conv, features, bias, relu: submanifold.submanifold_conv(features, conv.weight, neighbours,
                                                                               bias, relu)

    def _spconv(self, level: VoxelLevel, batch_size: int):
        """Layers on spconv; the sparse tensor carries its rulebook (``indice_key``) from layer to layer."""
        select_algo(self, level.features.device)
        r = level.resolution
        state = spconv.SparseConvTensor(level.features, level.indices, [r, r, r], batch_size)

        def convolve(conv, features: Tensor, bias: Tensor, relu: bool) -> Tensor:
            nonlocal state
            state = conv(state.replace_feature(features))
            y = state.features + bias
            return torch.relu(y) if relu else y

        return convolve


class HierarchicalVoxelConv(nn.Module):
    """Fine level first; its output, mean-pooled into coarse voxels, joins the coarse input; the coarse
    convolution's output then replaces ("rewrites") the coarse level."""

    def __init__(self, channels: int, hidden: int, layers_fine: int, layers_coarse: int):
        super().__init__()
        self.fine = SparseResidualNet(channels, hidden, channels, layers_fine, "fine")
        self.coarse = SparseResidualNet(2 * channels, hidden, channels, layers_coarse, "coarse")

    def forward(self, coarse: VoxelLevel, fine: VoxelLevel, batch_size: int) -> tuple[VoxelLevel, VoxelLevel]:
        if fine.features.shape[0] == 0:
            return coarse, fine
        fine_out = self.fine(fine, batch_size)
        ratio = fine.resolution // coarse.resolution
        parent = fine.indices.long()
        parent_keys = linear_key(parent[:, 0], parent[:, 1:] // ratio, coarse.resolution)
        rows = torch.searchsorted(coarse.keys, parent_keys)  # parents exist: coarse index = fine index // ratio
        pooled = fine_out.new_zeros(coarse.features.shape[0], fine_out.shape[1]).index_add_(0, rows, fine_out)
        counts = torch.bincount(rows, minlength=coarse.features.shape[0]).clamp_min(1)
        pooled = pooled / counts[:, None].to(pooled.dtype)
        coarse_in = coarse.with_features(torch.cat([coarse.features, pooled], dim=1))
        coarse_out = self.coarse(coarse_in, batch_size)
        return coarse.with_features(coarse_out), fine.with_features(fine_out)
