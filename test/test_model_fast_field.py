"""The O(1) field index and the packed, early-terminating renderer equal the slow reference (test/reference_field.py,
the implementation they replaced): exactly with early termination off, within the stated bound with it on, on
hand-built fields and on the shipped checkpoint's field for a real nuScenes frame. Inference renders run both
marches: the compiled one (csrc/march_cpu.cpp, what CPU inference uses) and the torch one (what training
differentiates), which also agree with each other sample for sample."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from distillnerf import cpu_kernels, renderer, voxels
from distillnerf.checkpoint import load_checkpoint, shipped_checkpoint
from distillnerf.config import load_model_config
from distillnerf.field import FieldHeads, SparseVoxelField
from distillnerf.occupancy import OccGridSpec, occupancy_probability
from distillnerf.renderer import render_rays
from distillnerf.rig import load_rig
from reference_field import reference_query, reference_render, reference_rows

TINY = load_model_config("tiny")
CHANNELS = ("render", "features")


def random_field(batch_size: int, seed: int, coarse_res: int = 32, fine_res: int = 64) -> SparseVoxelField:
    """Blobs of fine voxels (every fine voxel inside an occupied coarse voxel, as the model builds them) plus
    coarse voxels without fine children; random per-voxel density and features."""
    g = torch.Generator().manual_seed(seed)
    ratio = fine_res // coarse_res
    centres = torch.randint(8, fine_res - 8, (12, 3), generator=g)
    fine_index = (centres[:, None] + torch.randint(-6, 7, (12, 80, 3), generator=g)).reshape(-1, 3)
    fine_batch = torch.randint(0, batch_size, (fine_index.shape[0],), generator=g)
    lone = torch.randint(0, coarse_res, (40, 3), generator=g)
    lone_batch = torch.randint(0, batch_size, (40,), generator=g)
    coarse_index = torch.cat([fine_index // ratio, lone])
    coarse_batch = torch.cat([fine_batch, lone_batch])
    coarse = voxels.VoxelLevel.from_points(coarse_batch, coarse_index, torch.zeros(len(coarse_index), 1), coarse_res,
                                           batch_size)
    fine = voxels.VoxelLevel.from_points(fine_batch, fine_index, torch.zeros(len(fine_index), 1), fine_res,
                                         batch_size)
    field = SparseVoxelField(coarse, fine, batch_size, 50.0, 6.4, 0.8)
    rows = field.empty_row + 1
    density = torch.rand(rows, generator=g) * 3.0
    density[-1] = 0.0
    field.decoded = {"density": density, "render": torch.randn(rows, 5, generator=g),
                     "features": torch.randn(rows, 7, generator=g)}
    field.decoded["render"][-1] = 0.0
    field.decoded["features"][-1] = 0.0
    return field


def random_rays(count: int, batch_size: int, samples: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    origins = torch.randn(count, 3, generator=g) * torch.tensor([2.0, 2.0, 0.3])
    directions = torch.nn.functional.normalize(torch.randn(count, 3, generator=g) * torch.tensor([1.0, 1.0, 0.15]),
                                               dim=-1)
    t = torch.sort(torch.rand(count, samples, generator=g) * 119.0 + 0.5, dim=-1).values
    return torch.randint(0, batch_size, (count,), generator=g), origins, directions, t


def heads() -> FieldHeads:
    return FieldHeads(TINY)


@pytest.fixture(params=["compiled", "torch"])
def march(request, monkeypatch):
    """Which inference march render_rays takes: the compiled one where it applies, or the torch one."""
    if request.param == "torch":
        monkeypatch.setattr(renderer, "_compiled_march_applies", lambda *args: False)
    else:
        assert cpu_kernels.available(), cpu_kernels.ERROR
    return request.param


@pytest.mark.parametrize("batch_size", [1, 2])
@pytest.mark.parametrize("dense_coarse_table", [True, False])
def test_index_rows_equal_binary_search(batch_size, dense_coarse_table, monkeypatch):
    if not dense_coarse_table:  # force the sorted-key search used where a dense volume would be too large
        monkeypatch.setattr(voxels, "DENSE_LOOKUP_LIMIT", 0)
    field = random_field(batch_size, seed=3)
    g = torch.Generator().manual_seed(4)
    # points at fine voxels, at lone coarse voxels, in empty space and far outside the linear range
    points = torch.cat([torch.randn(3000, 3, generator=g) * torch.tensor([30.0, 30.0, 3.0]),
                        torch.randn(500, 3, generator=g) * 300.0])
    batch = torch.randint(0, batch_size, (points.shape[0],), generator=g)
    fast = field.rows(batch, points)
    reference = reference_rows(field, batch, points)
    assert torch.equal(fast, reference)
    vc = field.coarse.keys.numel()
    coarse_only, in_fine, empty = (reference < vc), (reference >= vc) & (reference < field.empty_row), \
        (reference == field.empty_row)
    assert bool(coarse_only.any() and in_fine.any() and empty.any()), "points must hit all three kinds of row"


@pytest.mark.parametrize("batch_size", [1, 2])
def test_render_equals_reference_without_early_termination(batch_size, march):
    field = random_field(batch_size, seed=5)
    batch, origins, directions, t = random_rays(400, batch_size, 90, seed=6)
    fast = render_rays(heads(), field, batch, origins, directions, t, 120.0, CHANNELS)
    slow = reference_render(field, batch, origins, directions, t, 120.0, CHANNELS)
    assert float(slow["opacity"].max()) > 0.5 and float(slow["opacity"].min()) < 0.1  # hits and misses
    for name in ("weights", "opacity", "distance") + CHANNELS:
        assert torch.allclose(fast[name], slow[name], atol=1e-5, rtol=1e-5), name


def test_render_gradients_equal_reference():
    grads = []
    for render in (lambda f, *a: render_rays(heads(), f, *a), reference_render):
        field = random_field(1, seed=7)
        for value in field.decoded.values():
            value.requires_grad_(True)
        batch, origins, directions, t = random_rays(300, 1, 80, seed=8)
        out = render(field, batch, origins, directions, t, 120.0, CHANNELS)
        g = torch.Generator().manual_seed(9)
        loss = sum((out[name] * torch.randn(out[name].shape, generator=g)).sum()
                   for name in ("distance", "opacity") + CHANNELS)
        loss.backward()
        grads.append({name: value.grad.clone() for name, value in field.decoded.items()})
    fast, slow = grads
    for name in fast:  # the last row is empty space, a constant zero (the reference reads it, the fast path never)
        assert torch.allclose(fast[name][:-1], slow[name][:-1], atol=1e-4, rtol=1e-4), name
    assert float(fast["density"].abs().sum()) > 0


@pytest.mark.parametrize("threshold,chunk", [(1e-4, 24), (1e-3, 7), (1e-2, 0)])
def test_early_termination_stays_within_its_bound(threshold, chunk, march):
    field = random_field(1, seed=10)
    batch, origins, directions, t = random_rays(500, 1, 100, seed=11)
    exact = reference_render(field, batch, origins, directions, t, 120.0, CHANNELS)
    early = render_rays(heads(), field, batch, origins, directions, t, 120.0, CHANNELS, threshold, chunk)
    # A terminated ray drops at most `threshold` of its weight: opacity and weighted sums move by at most that
    # much times the largest value (distance: times the far plane, where the remainder is put).
    slack = 1e-5
    assert bool(((exact["opacity"] - early["opacity"]) <= threshold + slack).all())
    assert bool((early["opacity"] <= exact["opacity"] + slack).all())
    assert float((exact["distance"] - early["distance"]).abs().max()) <= threshold * 120.0 + 1e-3
    for name in CHANNELS:
        bound = threshold * float(field.decoded[name].abs().max()) + slack
        assert float((exact[name] - early[name]).abs().max()) <= bound, name
    assert float((exact["weights"] - early["weights"]).abs().max()) <= threshold + slack


def assert_same_samples(compiled: dict, reference: dict) -> None:
    """The same composited samples: the torch march lists them chunk by chunk, the compiled one ray by ray, and
    both in sample order within a ray."""
    orders = [torch.sort(samples["ray"], stable=True).indices for samples in (compiled, reference)]
    a, b = ({key: value[order] for key, value in samples.items()} for samples, order in zip((compiled, reference),
                                                                                           orders))
    assert torch.equal(a["ray"], b["ray"]) and torch.equal(a["row"], b["row"])
    assert torch.allclose(a["weight"], b["weight"], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("batch_size,threshold,chunk", [(1, 0.0, 0), (2, 1e-4, 24), (1, 1e-2, 7)])
def test_compiled_march_equals_the_torch_march(batch_size, threshold, chunk, monkeypatch):
    """Sample for sample: the same samples composited, from the same rows, with the same weights."""
    field = random_field(batch_size, seed=20 + batch_size)
    batch, origins, directions, t = random_rays(600, batch_size, 90, seed=21)
    assert renderer._compiled_march_applies(field, t, CHANNELS)
    compiled = render_rays(heads(), field, batch, origins, directions, t, 120.0, CHANNELS, threshold, chunk)
    monkeypatch.setattr(renderer, "_compiled_march_applies", lambda *args: False)
    reference = render_rays(heads(), field, batch, origins, directions, t, 120.0, CHANNELS, threshold, chunk)
    assert_same_samples(compiled["samples"], reference["samples"])
    for name in ("weights", "opacity", "distance") + CHANNELS:
        assert torch.allclose(compiled[name], reference[name], atol=1e-5, rtol=1e-5), name


def test_march_with_gradients_or_a_searched_coarse_level_stays_in_torch(monkeypatch):
    field = random_field(1, seed=22)
    _, _, _, t = random_rays(10, 1, 20, seed=23)
    assert renderer._compiled_march_applies(field, t, CHANNELS)
    field.decoded["render"].requires_grad_(True)  # training: the torch march, which autograd can differentiate
    assert not renderer._compiled_march_applies(field, t, CHANNELS)
    with torch.no_grad():
        assert renderer._compiled_march_applies(field, t, CHANNELS)
    monkeypatch.setattr(voxels, "DENSE_LOOKUP_LIMIT", 0)  # a coarse level too large for a dense row volume
    assert not renderer._compiled_march_applies(random_field(1, seed=22), t, CHANNELS)


def test_queries_equal_reference():
    field = random_field(2, seed=12)
    g = torch.Generator().manual_seed(13)
    points = torch.randn(4000, 3, generator=g) * 25.0
    batch = torch.randint(0, 2, (4000,), generator=g)
    values, found = heads().query(field, batch, points, ("density", "features"))
    reference = reference_query(field, batch, points, ("density", "features"))
    assert torch.equal(values["density"], reference["density"]) and torch.equal(values["features"],
                                                                                reference["features"])
    assert bool(found.any()) and not bool(found.all())


# -- the shipped checkpoint on a real nuScenes frame ---------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped_field(request):
    path = shipped_checkpoint("cpu")
    if path is None:
        pytest.skip("no shipped cpu checkpoint in the model library")
    tiny = request.getfixturevalue("nuscenes_tiny")
    cv2 = pytest.importorskip("cv2")
    model, config, _ = load_checkpoint(path)
    rig = load_rig("nuscenes").resized(*config.input_size)
    images = []
    for name in config.camera_names:
        file = sorted((tiny / "samples" / name).glob("n015-2018-07-24-11-22-45*.jpg"))[0]
        image = cv2.resize(cv2.cvtColor(cv2.imread(str(file)), cv2.COLOR_BGR2RGB), config.input_size,
                           interpolation=cv2.INTER_AREA)
        images.append(torch.from_numpy(image).permute(2, 0, 1).float() / 255.0)
    cams = [rig.camera(name) for name in config.camera_names]
    intrinsics = torch.tensor(np.stack([c.intrinsics for c in cams]), dtype=torch.float32)[None]
    cam_to_ego = torch.tensor(np.stack([c.cam_to_ego for c in cams]), dtype=torch.float32)[None]
    captured = {}
    import distillnerf.model as model_module

    def capture(heads, field, batch, origins, directions, t, far, channels, *args):
        captured.update(field=field, rays=(batch, origins, directions, t, far))
        return render_rays(heads, field, batch, origins, directions, t, far, channels, *args)

    mp = pytest.MonkeyPatch()
    mp.setattr(model_module, "render_rays", capture)
    try:
        with torch.no_grad():
            out = model(torch.stack(images)[None], intrinsics, cam_to_ego)
    finally:
        mp.undo()
    return model, config, captured["field"], captured["rays"], out


def test_shipped_checkpoint_renders_a_real_frame_like_the_reference(shipped_field, march):
    model, config, field, (batch, origins, directions, t, far), _ = shipped_field
    coarse, fine = field.num_voxels
    assert fine > 20000, "a trained field on a real frame has many occupied voxels"
    with torch.no_grad():
        slow = reference_render(field, batch, origins, directions, t, far, CHANNELS)
        exact = render_rays(model.heads, field, batch, origins, directions, t, far, CHANNELS)
        early = render_rays(model.heads, field, batch, origins, directions, t, far, CHANNELS,
                            config.early_stop_transmittance, config.march_chunk)
    for name in ("weights", "opacity", "distance") + CHANNELS:
        assert torch.allclose(exact[name], slow[name], atol=1e-4, rtol=1e-5), name
    threshold = config.early_stop_transmittance
    assert threshold > 0 and config.march_chunk > 0
    assert float((slow["opacity"] - early["opacity"]).abs().max()) <= threshold + 1e-5
    assert float((slow["distance"] - early["distance"]).abs().max()) <= threshold * far + 1e-3
    for name in CHANNELS:
        bound = threshold * float(field.decoded[name].abs().max()) + 1e-5
        assert float((slow[name] - early[name]).abs().max()) <= bound, name


def test_shipped_checkpoint_occupancy_and_gradients_match_the_reference(shipped_field):
    model, config, field, (batch, origins, directions, t, far), _ = shipped_field
    spec = OccGridSpec()
    with torch.no_grad():
        fast = occupancy_probability(model, field, spec, config.occupancy_subsamples)
        points = spec.centres("cpu", config.occupancy_subsamples)
        sigma = reference_query(field, torch.zeros(points.shape[0], dtype=torch.long), points, ("density",))
    slow = (1.0 - torch.exp(-sigma["density"] * min(spec.voxel_size))).reshape(
        1, *spec.size, int(np.prod(config.occupancy_subsamples))).amax(-1)
    assert torch.allclose(fast, slow, atol=1e-6)
    assert int((fast > config.occupancy_threshold).sum()) > 1000
    # gradients with respect to the decoded per-voxel rows, on a slice of the frame's rays
    rays = slice(0, t.shape[0], 7)
    grads = []
    for render in (lambda f, *a: render_rays(model.heads, f, *a), reference_render):
        leaf = {name: value.detach().clone().requires_grad_(True) for name, value in field.decoded.items()}
        probe = replace(field, decoded=leaf)
        out = render(probe, batch[rays], origins[rays], directions[rays], t[rays], far, ("render",))
        (out["distance"].sum() * 1e-2 + out["render"].sum()).backward()
        grads.append({name: leaf[name].grad for name in ("density", "render")})
    for name in ("density", "render"):
        assert torch.allclose(grads[0][name][:-1], grads[1][name][:-1], atol=1e-4, rtol=1e-4), name


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fast_render_on_cuda_equals_the_cpu_reference():
    field = random_field(2, seed=14)
    batch, origins, directions, t = random_rays(600, 2, 90, seed=15)
    slow = reference_render(field, batch, origins, directions, t, 120.0, CHANNELS)
    cuda = torch.device("cuda")
    gpu_field = SparseVoxelField(
        *(voxels.VoxelLevel(level.resolution, level.keys.to(cuda), level.indices.to(cuda), level.features.to(cuda),
                            level.batch_size) for level in (field.coarse, field.fine)),
        field.batch_size, field.radius_xy, field.radius_z, field.alpha,
        {name: value.to(cuda) for name, value in field.decoded.items()})
    fast = render_rays(heads().to(cuda), gpu_field, batch.to(cuda), origins.to(cuda), directions.to(cuda),
                       t.to(cuda), 120.0, CHANNELS)
    for name in ("opacity", "distance") + CHANNELS:
        assert torch.allclose(fast[name].cpu(), slow[name], atol=1e-4, rtol=1e-4), name


def test_compiled_march_equals_the_torch_march_on_the_shipped_field(shipped_field, monkeypatch):
    model, config, field, (batch, origins, directions, t, far), _ = shipped_field
    args = (model.heads, field, batch, origins, directions, t, far, CHANNELS, config.early_stop_transmittance,
            config.march_chunk)
    with torch.no_grad():
        assert renderer._compiled_march_applies(field, t, CHANNELS)
        compiled = render_rays(*args)
        monkeypatch.setattr(renderer, "_compiled_march_applies", lambda *a: False)
        reference = render_rays(*args)
    assert compiled["samples"]["row"].numel() > 100_000
    assert_same_samples(compiled["samples"], reference["samples"])
    for name in ("weights", "opacity", "distance") + CHANNELS:
        assert torch.allclose(compiled[name], reference[name], atol=1e-4, rtol=1e-5), name


def test_features_read_without_rendering_them_equal_the_full_decode():
    """Inference that skips rendered feature images decodes the feature head only on the voxels it queries."""
    from distillnerf.model import DistillNeRF

    torch.manual_seed(0)
    config = load_model_config("tiny")
    model = DistillNeRF(config).eval()
    rig = load_rig("nuscenes").resized(*config.input_size)
    cams = [rig.camera(n) for n in config.camera_names]
    images = torch.rand(1, 6, 3, config.input_height, config.input_width)
    k = torch.tensor(np.stack([c.intrinsics for c in cams]), dtype=torch.float32)[None]
    e = torch.tensor(np.stack([c.cam_to_ego for c in cams]), dtype=torch.float32)[None]
    with torch.no_grad():
        full = model(images, k, e)
        lean = model(images, k, e, render_features=False)
        assert "features" in full and "features" not in lean and "features" not in lean["field"].decoded
        assert torch.equal(full["depth"], lean["depth"]) and torch.equal(full["rgb"], lean["rgb"])
        points = torch.randn(1, 3000, 3) * 15.0
        points = torch.cat([points, points[:, :1000] + 0.01, points[:, :500]], dim=1)  # voxels read many times
        assert torch.allclose(model.query_features(full["field"], points), model.query_features(lean["field"], points),
                              atol=1e-6)
        assert torch.equal(model.query_density(full["field"], points), model.query_density(lean["field"], points))


def test_distinct_rows_are_torch_unique_without_a_sort():
    from distillnerf.field import distinct_rows

    rows = torch.tensor([7, 3, 3, 9, 0, 7, 7, 2])
    distinct, position = distinct_rows(rows, 10)
    expected, inverse = torch.unique(rows, return_inverse=True)
    assert torch.equal(distinct, expected) and torch.equal(position, inverse)
    assert torch.equal(distinct[position], rows)
