"""The neural field: a sparse two-level voxel grid plus the MLPs that turn voxel features into density, render
features and foundation features.

Lookup snaps a point to its voxel on each level ("nearest", the paper's choice) or interpolates the 8 neighbours
("trilinear"). The density complement takes the fine level where a fine voxel exists, else the coarse level, else
empty space (zero density, zero features). With nearest lookup the MLPs depend only on the voxel, so they run once
per voxel and samples gather the results: exact, and far cheaper than running them per sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dataclass_field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillnerf.config import ModelConfig
from distillnerf.geometry import contract, contract_components
from distillnerf.voxels import TwoLevelIndex, VoxelLevel, voxel_centres


@dataclass
class SparseVoxelField:
    """A batch of fields: two sparse levels (rows keyed by batch and voxel) and per-voxel decoded outputs."""

    coarse: VoxelLevel
    fine: VoxelLevel
    batch_size: int
    radius_xy: float
    radius_z: float
    alpha: float
    decoded: dict[str, Tensor] = dataclass_field(default_factory=dict)  # name -> [Vc + Vf + 1, ...], last = empty
    _index: TwoLevelIndex | None = dataclass_field(default=None, repr=False, compare=False)

    def contract(self, points: Tensor) -> Tensor:
        return contract(points, self.radius_xy, self.radius_z, self.alpha)

    @property
    def index(self) -> TwoLevelIndex:
        """The O(1) lookup over both levels, built on first use (the levels must not change afterwards)."""
        index = self._index
        if index is None or index.coarse.keys is not self.coarse.keys or index.fine.keys is not self.fine.keys:
            self._index = TwoLevelIndex(self.coarse, self.fine)
        return self._index

    @property
    def empty_row(self) -> int:
        """Row of empty space in the stacked table (zero density, zero features)."""
        return self.coarse.keys.numel() + self.fine.keys.numel()

    def nearest_rows(self, batch: Tensor, coords: Tensor) -> Tensor:
        """Row in the stacked table [coarse; fine; empty] for each contracted point, with the density complement:
        the fine voxel where one exists, else its coarse voxel, else empty space."""
        return self.index.rows(batch, coords)

    def rows(self, batch: Tensor | None, points: Tensor) -> Tensor:
        """Stacked row of each ego point [..., 3] of batch entries (broadcastable to [...]; None = entry 0)."""
        coords = contract_components(*points.unbind(-1), self.radius_xy, self.radius_z, self.alpha)
        return self.index.rows_of_components(batch, *coords)

    @property
    def num_voxels(self) -> tuple[int, int]:
        return self.coarse.keys.numel(), self.fine.keys.numel()


def _interpolate_level(level: VoxelLevel, batch: Tensor, coords: Tensor) -> tuple[Tensor, Tensor]:
    """Trilinear interpolation over the occupied neighbours of one level -> (features [P,C], found [P] bool)."""
    r = level.resolution
    grid = (coords + 1.0) * (0.5 * r) - 0.5
    base = torch.floor(grid)
    frac = grid - base
    total = coords.new_zeros(coords.shape[0], level.features.shape[1])
    weight_sum = coords.new_zeros(coords.shape[0])
    for corner in range(8):
        offset = torch.tensor([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1], device=coords.device)
        index = base.long() + offset
        inside = ((index >= 0) & (index < r)).all(dim=-1)
        rows = level.lookup(batch, index.clamp(0, r - 1))
        w = torch.where(offset.bool(), frac, 1.0 - frac).prod(dim=-1) * ((rows >= 0) & inside)
        total = total + w[:, None] * level.features[rows.clamp_min(0)]
        weight_sum = weight_sum + w
    found = weight_sum > 1e-6
    return total / weight_sum.clamp_min(1e-6)[:, None], found


def distinct_rows(rows: Tensor, num_rows: int) -> tuple[Tensor, Tensor]:
    """(the distinct values of ``rows`` [P] in [0, num_rows), ascending; each entry's position among them [P]):
    torch.unique without its sort, through a table over all rows (many queries fall into few voxels: the Occ3D
    grid's 84 k occupied voxels read 25 k rows of the shipped model's field)."""
    seen = torch.zeros(num_rows, dtype=torch.bool, device=rows.device)
    seen[rows] = True
    distinct = seen.nonzero()[:, 0]
    position = torch.empty(num_rows, dtype=torch.long, device=rows.device)
    position[distinct] = torch.arange(distinct.numel(), device=rows.device)
    return distinct, position[rows]


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 2) -> nn.Sequential:
    modules, previous = [], in_dim
    for _ in range(layers - 1):
        modules += [nn.Linear(previous, hidden), nn.ReLU(inplace=True)]
        previous = hidden
    modules.append(nn.Linear(previous, out_dim))
    return nn.Sequential(*modules)


class FieldHeads(nn.Module):
    """Per-voxel (or per-sample) MLPs: density, render features, foundation features, coordinate regression."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config.level_channels + 1
        self.config = config
        self.density = mlp(c, config.mlp_hidden, 1)
        self.render = mlp(c, config.mlp_hidden, config.render_feature_dim)
        # The paper's foundation head: 64 -> 64 -> 64 -> 64 on the render features of each sample.
        self.foundation = mlp(config.render_feature_dim, config.feature_dim, config.feature_dim, 3) \
            if config.feature_head else None
        self.coordinates = mlp(config.feature_dim, config.mlp_hidden, 3) if config.coordinate_head else None

    def forward(self, raw: Tensor) -> dict[str, Tensor]:
        """raw voxel features [P, C+1] -> dict of density [P], render [P,Fr], features [P,F], descriptor [P,F]."""
        out = self.geometry(raw)
        out.update(self.foundation_outputs(out["render"]))
        return out

    def geometry(self, raw: Tensor) -> dict[str, Tensor]:
        """Density [P] and render features [P, Fr] of raw voxel features."""
        return {"density": F.softplus(self.density(raw)[:, 0] + self.config.density_bias), "render": self.render(raw)}

    def foundation_outputs(self, render: Tensor) -> dict[str, Tensor]:
        """Foundation features and 3D descriptors from render features (empty without the feature head)."""
        if self.foundation is None:
            return {}
        hidden = self.foundation[:-1](torch.relu(render))
        features = self.foundation[-1](hidden)
        return {"features": features, "descriptor": hidden if self.config.descriptor == "internal" else features}

    def decode(self, field: SparseVoxelField, foundation: bool = True) -> SparseVoxelField:
        """Evaluate the heads once per voxel; the stacked table gets a last all-zero row for empty space. With
        ``foundation`` false only density and render features are decoded; queries for features then run the
        foundation head on the rows they read (the same values: the head is per voxel)."""
        raw = torch.cat([field.coarse.features, field.fine.features], dim=0)
        outputs = self(raw) if foundation else self.geometry(raw)
        field.decoded = {name: torch.cat([value, value.new_zeros((1,) + value.shape[1:])], dim=0)
                         for name, value in outputs.items()}
        return field

    def query(self, field: SparseVoxelField, batch: Tensor, points: Tensor, names: tuple[str, ...]
              ) -> tuple[dict[str, Tensor], Tensor]:
        """Outputs at ego points [P,3] of batch entries [P]; also returns a mask of points inside occupied voxels."""
        if self.config.lookup == "nearest":
            rows = field.rows(batch, points)
            found = rows != field.empty_row
            values = {name: field.decoded[name][rows] for name in names if name in field.decoded}
            lazy = [name for name in names if name not in field.decoded]
            if lazy:  # foundation outputs not decoded per voxel: evaluate them once per distinct row read
                distinct, inverse = distinct_rows(rows, field.empty_row + 1)
                computed = self.foundation_outputs(field.decoded["render"][distinct])
                for name in lazy:  # (empty space stays 0)
                    values[name] = computed[name][inverse] * found[:, None].to(computed[name].dtype)
            return values, found
        coords = field.contract(points)
        fine, fine_found = _interpolate_level(field.fine, batch, coords)
        coarse, coarse_found = _interpolate_level(field.coarse, batch, coords)
        found = fine_found | coarse_found
        raw = torch.where(fine_found[:, None], fine, coarse)
        outputs = self(raw[found])
        result = {}
        for name in names:
            value = outputs[name]
            full = value.new_zeros((points.shape[0],) + value.shape[1:])
            result[name] = full.index_put((found.nonzero()[:, 0],), value)
        return result, found

    def fine_voxel_centres(self, field: SparseVoxelField) -> tuple[Tensor, Tensor]:
        """(batch [Vf], contracted centres [Vf,3]) of the fine level (targets for the coordinate head)."""
        index = field.fine.indices.long()
        return index[:, 0], voxel_centres(index[:, 1:], field.fine.resolution)
