"""Occ3D grid layout, semantic labelling by embedding similarity, and camera visibility of voxels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distillnerf.occupancy import FREE_LABEL, OCC3D_CLASSES, OccGridSpec, semantic_labels
from distillnerf.perception import Perception
from distillnerf.rig import load_rig


def test_occ3d_grid_layout():
    spec = OccGridSpec()
    assert spec.size == (200, 200, 16) and np.allclose(spec.voxel_size, 0.4) and spec.origin == (-40.0, -40.0, -1.0)
    centres = spec.centres().reshape(200, 200, 16, 3)
    assert torch.allclose(centres[0, 0, 0], torch.tensor([-39.8, -39.8, -0.8]))
    assert torch.allclose(centres[199, 0, 15], torch.tensor([39.8, -39.8, 5.2]))
    assert torch.allclose(centres[3, 5, 7], torch.tensor([-40 + 3.5 * 0.4, -40 + 5.5 * 0.4, -1 + 7.5 * 0.4]))
    sub = OccGridSpec((0.0, 1.0), (0.0, 1.0), (0.0, 1.0), (1, 1, 1)).centres(subsamples=2)
    assert sub.shape == (8, 3) and torch.allclose(sub.mean(0), torch.tensor([0.5, 0.5, 0.5]))
    z_only = OccGridSpec((0.0, 1.0), (0.0, 1.0), (0.0, 1.0), (1, 1, 1)).centres(subsamples=(1, 1, 4))
    assert torch.allclose(z_only, torch.tensor([[0.5, 0.5, z] for z in (0.125, 0.375, 0.625, 0.875)]))
    with pytest.raises(ValueError, match="subsamples"):
        spec.centres(subsamples=(1, 2))
    assert len(OCC3D_CLASSES) == 18 and OCC3D_CLASSES[FREE_LABEL] == "free" and OCC3D_CLASSES[4] == "car"


def test_semantic_labels_pick_the_most_similar_class():
    classes = torch.eye(4, 8)  # 4 classes, orthogonal embeddings
    features = torch.tensor([[0.1, 5.0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 2.0, 0, 0, 0, 0], [3.0, 0, 0, 0, 0, 0, 0, 0]])
    occupied = torch.tensor([True, True, False])
    assert semantic_labels(features, classes, occupied).tolist() == [1, 3, FREE_LABEL]
    # scores are -squared distances: feature 1 scores -1 for class 3 and -5 for class 0, so an offset of +4.5 on
    # class 0 makes it the nearest (-0.5 > -1) and +3.5 does not (-1.5 < -1); feature 0 (-16.01 vs -25.81) keeps 1
    assert semantic_labels(features, classes, occupied, torch.tensor([4.5, 0, 0, 0])).tolist() == [1, 0, FREE_LABEL]
    assert semantic_labels(features, classes, occupied, torch.tensor([3.5, 0, 0, 0])).tolist() == [1, 3, FREE_LABEL]


def test_surface_offset_gives_visibility_and_free_space():
    from distillnerf.occupancy import occupied_voxels
    from distillnerf.visibility import ImageProjection, surface_offset

    p = Perception.from_config("tiny", device="cpu", seed=0)
    rig = load_rig("nuscenes").resized(32, 18)
    k = torch.tensor(np.stack([c.intrinsics for c in rig.cameras]), dtype=torch.float32)
    e = torch.tensor(np.stack([c.cam_to_ego for c in rig.cameras]), dtype=torch.float32)
    depth = torch.full((6, 18, 32), 20.0)  # every camera sees a surface 20 m away (camera z)
    front = rig.camera_names.index("CAM_FRONT")
    ahead_near = [1.7 + 10.0, 0.0, 1.5]  # 10 m in front of the front camera's surface: seen through
    ahead_surface = [1.7 + 20.2, 0.0, 1.5]  # on the surface
    ahead_far = [1.7 + 30.0, 0.0, 1.5]   # behind the 20 m surface by more than the margin: hidden
    above = [0.0, 0.0, 60.0]              # straight up: in no camera's image
    points = torch.tensor([ahead_near, ahead_surface, ahead_far, above])
    valid = torch.ones(6, dtype=torch.bool)
    offset = surface_offset(ImageProjection.of(points, k, e, (18, 32)), depth, valid)
    np.testing.assert_allclose(offset[:3].numpy(), [-10.0, 0.2, 10.0], atol=0.05)
    assert torch.isinf(offset[3])
    visible = offset <= p.config.visibility_margin
    assert visible.tolist() == [True, True, False, False]
    # free-space carving: dense everywhere, but the camera sees through the first point
    dense = torch.ones(4)
    assert occupied_voxels(dense, offset, 0.5).tolist() == [True] * 4  # off: density alone decides
    assert occupied_voxels(dense, offset, 0.5, free_space_margin=0.4).tolist() == [False, True, True, True]
    assert occupied_voxels(dense * 0.3, offset, 0.5, free_space_margin=0.4).tolist() == [False] * 4
    valid[front] = False  # the front camera dropped: nothing else looks straight ahead
    offset = surface_offset(ImageProjection.of(points, k, e, (18, 32)), depth, valid)
    assert torch.isinf(offset).all()
    assert occupied_voxels(dense, offset, 0.5, free_space_margin=0.4).all()  # unseen space is never carved


def test_surface_point_is_the_sub_sample_that_made_the_voxel_occupied():
    import torch

    from distillnerf.occupancy import OccGridSpec, occupancy_and_surface

    spec = OccGridSpec((-0.8, 0.8), (-0.4, 0.4), (-0.4, 0.4), (4, 2, 2))

    class Model:  # density only in the top half of every voxel (z > its centre)
        def query_density(self, field, points):
            z = points[..., 2]
            cell = torch.floor((z + 0.4) / 0.4)
            return torch.where(z - (-0.4 + 0.4 * cell) > 0.2, torch.tensor(50.0), torch.tensor(0.0))

    field = type("Field", (), {"coarse": type("L", (), {"features": torch.zeros(1)})(), "batch_size": 1})()
    prob, surface = occupancy_and_surface(Model(), field, spec, (1, 1, 2))
    assert prob.shape == (1, 4, 2, 2) and surface.shape == (1, 4, 2, 2, 3)
    assert bool((prob > 0.99).all())
    centres = spec.centres("cpu").reshape(4, 2, 2, 3)
    assert torch.allclose(surface[0, ..., 2], centres[..., 2] + 0.1)  # the upper sub-sample, not the centre


def test_with_a_threshold_the_surface_point_is_the_highest_sub_sample_above_it():
    import torch

    from distillnerf.occupancy import OccGridSpec, occupancy_and_surface

    spec = OccGridSpec((-0.8, 0.8), (-0.4, 0.4), (-0.4, 0.4), (4, 2, 2))

    class Model:  # road-like dense lower half, a fainter car body above it in the x > 0 voxels only
        def query_density(self, field, points):
            z, x = points[..., 2], points[..., 0]
            lower = (z - (-0.4 + 0.4 * torch.floor((z + 0.4) / 0.4))) < 0.2
            return torch.where(lower, torch.tensor(50.0), torch.where(x > 0, torch.tensor(2.0), torch.tensor(0.0)))

    field = type("Field", (), {"coarse": type("L", (), {"features": torch.zeros(1)})(), "batch_size": 1})()
    centres = spec.centres("cpu").reshape(4, 2, 2, 3)
    _, most = occupancy_and_surface(Model(), field, spec, (1, 1, 2))
    assert torch.allclose(most[0, ..., 2], centres[..., 2] - 0.1)  # no threshold: the most occupied, lower half
    prob, top = occupancy_and_surface(Model(), field, spec, (1, 1, 2), threshold=0.3)
    upper = centres[..., 0] > 0  # 1 - exp(-2 * 0.4) = 0.55 > 0.3 there; nothing above the road elsewhere
    assert torch.allclose(top[0][upper][:, 2], centres[upper][:, 2] + 0.1)
    assert torch.allclose(top[0][~upper][:, 2], centres[~upper][:, 2] - 0.1)
    assert bool((prob > 0.99).all())  # the probability is still the maximum over the sub-samples
    _, high = occupancy_and_surface(Model(), field, spec, (1, 1, 2), threshold=0.6)
    assert torch.allclose(high, most)  # the body is below this threshold: the road's sub-sample again


def test_surface_offset_reads_depth_between_pixel_centres():
    # ground seen at a grazing angle: depth grows row by row, so a point between two rows' centres must be compared
    # with the depth interpolated there, not with the depth of the row it falls in
    from distillnerf.visibility import ImageProjection, surface_offset

    k = torch.tensor([[[10.0, 0.0, 4.0], [0.0, 10.0, 4.0], [0.0, 0.0, 1.0]]])
    e = torch.eye(4)[None]  # camera frame = ego frame: z is depth
    rows = torch.arange(8, dtype=torch.float32)
    depth = (20.0 + 2.0 * rows)[None, :, None].expand(1, 8, 8).contiguous()  # row r (centre v = r + 0.5): 20 + 2r m
    # a point at v = 3.0: in pixel row 3, halfway between the centres of rows 2 (v = 2.5) and 3 (v = 3.5)
    z = 25.0
    points = torch.tensor([[0.0, (3.0 - 4.0) * z / 10.0, z]])
    offset = surface_offset(ImageProjection.of(points, k, e, (8, 8)), depth, torch.ones(1, dtype=torch.bool))
    # interpolated depth at v = 3.0: halfway between 24 (row 2) and 26 (row 3) = 25 m: the point is on the surface
    np.testing.assert_allclose(offset.numpy(), [0.0], atol=1e-4)


def test_grid_projection_is_kept_while_the_calibration_is_unchanged():
    from distillnerf.visibility import GridProjection, ImageProjection, surface_offset

    rig = load_rig("nuscenes").resized(32, 18)
    k = torch.tensor(np.stack([c.intrinsics for c in rig.cameras]), dtype=torch.float32)
    e = torch.tensor(np.stack([c.cam_to_ego for c in rig.cameras]), dtype=torch.float32)
    points = torch.randn(300, 3, generator=torch.Generator().manual_seed(0)) * 15.0
    cache = GridProjection(points)
    first = cache(k, e, (18, 32))
    assert cache(k.clone(), e.clone(), (18, 32)) is first  # equal calibration: the stored projection
    moved = e.clone()
    moved[:, 0, 3] += 0.5  # the rig recalibrated: projected again, as a fresh projection would be
    second = cache(k, moved, (18, 32))
    fresh = ImageProjection.of(points, k, moved, (18, 32))
    assert second is not first and torch.equal(second.grid, fresh.grid) and torch.equal(second.z, fresh.z)
    assert cache(k, moved, (9, 16)) is not second  # another depth size: other normalised positions
    depth = torch.rand(6, 18, 32) * 30.0 + 1.0
    valid = torch.ones(6, dtype=torch.bool)
    valid[2] = False
    offset = surface_offset(cache(k, e, (18, 32)), depth, valid)
    # the same minimum, camera by camera, without the dropped camera
    each = torch.stack([surface_offset(ImageProjection.of(points, k[i:i + 1], e[i:i + 1], (18, 32)), depth[i:i + 1],
                                       torch.ones(1, dtype=torch.bool)) for i in range(6) if i != 2])
    assert torch.equal(torch.isinf(offset), torch.isinf(each.amin(dim=0)))
    assert torch.allclose(offset, each.amin(dim=0), atol=1e-4)
    assert torch.isinf(surface_offset(first, depth, torch.zeros(6, dtype=torch.bool))).all()


def test_grid_density_from_cached_cells_equals_the_point_query():
    """The Occ3D grid's sub-samples read through their cached cells give exactly the densities a query of the
    same points gives, for each entry of a batch (a second call reuses the cells)."""
    import torch

    from distillnerf.config import load_model_config
    from distillnerf.model import DistillNeRF
    from distillnerf.occupancy import OccGridSpec, grid_density
    from test_model_forward import make_inputs

    config = load_model_config("tiny")
    torch.manual_seed(0)
    model = DistillNeRF(config).eval()
    spec = OccGridSpec()
    with torch.no_grad():
        field = model(*make_inputs(config, batch=2))["field"]
        points = spec.centres("cpu", (1, 1, 2))
        expected = model.query_density(field, points[None].expand(2, -1, -1))
        for _ in range(2):
            density = grid_density(model, field, spec, (1, 1, 2))
            assert torch.equal(density, expected)
    assert float(expected.max()) > 0.0  # the field is not empty where the grid looks
