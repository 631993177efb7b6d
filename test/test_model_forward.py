"""End-to-end forward pass of the tiny model: shapes, gradients, batching, determinism, dropped cameras, queries."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from distillnerf.config import load_model_config
from distillnerf.model import DistillNeRF
from distillnerf.occupancy import OccGridSpec, occupancy_probability
from distillnerf.rig import load_rig


TINY = load_model_config("tiny")


def make_model(config=TINY, seed=0) -> DistillNeRF:
    torch.manual_seed(seed)
    return DistillNeRF(config)


def make_inputs(config=TINY, batch=1, seed=0):
    rig = load_rig("nuscenes").resized(config.input_width, config.input_height)
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 6, 3, config.input_height, config.input_width, generator=g)
    k = torch.tensor(np.stack([c.intrinsics for c in rig.cameras]), dtype=torch.float32)
    e = torch.tensor(np.stack([c.cam_to_ego for c in rig.cameras]), dtype=torch.float32)
    return images, k.expand(batch, -1, -1, -1).clone(), e.expand(batch, -1, -1, -1).clone()


def test_forward_shapes_and_ranges():
    model = make_model().eval()
    images, k, e = make_inputs(batch=2)
    with torch.no_grad():
        out = model(images, k, e)
    c = TINY
    h, w, H, W = c.render_height, c.render_width, c.input_height, c.input_width
    s = c.num_bins + c.fine_samples
    assert out["depth"].shape == out["opacity"].shape == (2, 6, h, w)
    assert out["rgb"].shape == (2, 6, 3, H, W)
    assert out["features"].shape == (2, 6, c.feature_dim, h, w)
    assert out["coarse_depth"].shape == (2, 6, H, W)
    assert out["render_intrinsics"].shape == (2, 6, 3, 3)
    assert out["weights"].shape == out["sample_depths"].shape == (2, 6, h, w, s)
    assert torch.allclose(out["render_intrinsics"][0, 0, :2], k[0, 0, :2] * 0.5)
    assert float(out["rgb"].min()) >= 0.0 and float(out["rgb"].max()) <= 1.0
    assert bool(((out["opacity"] >= 0) & (out["opacity"] <= 1 + 1e-5)).all())
    assert float(out["depth"].min()) > 0.0 and float(out["depth"].max()) <= c.far + 1e-3
    assert torch.allclose(out["weights"].sum(-1), out["opacity"], atol=1e-5)
    density = model.query_density(out["field"], torch.randn(2, 50, 3) * 10)
    assert density.shape == (2, 50) and float(density.min()) >= 0.0
    assert model.query_features(out["field"], torch.randn(2, 7, 3)).shape == (2, 7, c.feature_dim)


def test_gradients_reach_every_trainable_parameter():
    config = replace(TINY, coordinate_head=True)
    model = make_model(config).train()
    images, k, e = make_inputs(config)
    out = model(images, k, e)
    loss = (out["depth"].mean() / config.far + out["rgb"].mean() + out["features"].mean() + out["opacity"].mean()
            + out["coarse_depth"].mean() / config.far
            + (out["coordinate_prediction"] - out["coordinate_target"]).abs().mean())
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and
               (p.grad is None or float(p.grad.abs().sum()) == 0.0)]
    assert not missing, f"no gradient reaches: {missing}"


def test_batch_of_two_equals_two_batches_of_one():
    model = make_model().eval()
    images, k, e = make_inputs(batch=2, seed=3)
    k[1] = k[1] * torch.tensor([1.1, 0.9, 1.0])[:, None]  # the two frames differ in calibration too
    with torch.no_grad():
        both = model(images, k, e)
        singles = [model(images[i:i + 1], k[i:i + 1], e[i:i + 1]) for i in range(2)]
    for key in ("depth", "opacity", "rgb", "features", "coarse_depth"):
        joined = torch.cat([s[key] for s in singles])
        assert torch.allclose(both[key], joined, atol=1e-4, rtol=1e-4), key
    points = torch.randn(2, 100, 3) * 15
    dens = model.query_density(both["field"], points)
    assert torch.allclose(dens[1], model.query_density(singles[1]["field"], points[1:])[0], atol=1e-5)


def test_same_seed_same_output():
    images, k, e = make_inputs(seed=5)
    outputs = []
    for _ in range(2):
        model = make_model(seed=7).eval()
        with torch.no_grad():
            outputs.append(model(images, k, e))
    for key in ("depth", "rgb", "features"):
        assert torch.allclose(outputs[0][key], outputs[1][key], atol=1e-6), key
    other = make_model(seed=8).eval()
    with torch.no_grad():
        assert not torch.allclose(other(images, k, e)["rgb"], outputs[0]["rgb"])


def test_dropped_camera_is_excluded_from_fusion_but_still_rendered():
    model = make_model().eval()
    images, k, e = make_inputs()
    valid = torch.ones(1, 6, dtype=torch.bool)
    valid[0, 1] = False
    changed = images.clone()
    changed[0, 1] = 1.0 - changed[0, 1]
    with torch.no_grad():
        a = model(images, k, e, valid)
        b = model(changed, k, e, valid)
        full = model(images, k, e)
    assert a["depth"].shape == (1, 6, TINY.render_height, TINY.render_width)
    # the dropped camera's pixels do not reach the field: changing them changes no density
    assert torch.allclose(a["depth"], b["depth"], atol=1e-5)
    assert a["field"].num_voxels[1] < full["field"].num_voxels[1]
    none = torch.zeros(1, 6, dtype=torch.bool)
    with torch.no_grad():
        empty = model(images, k, e, none)
    # no camera fused: the field is empty, every ray reads the far plane (camera z = far * cos angle)
    assert empty["field"].num_voxels == (0, 0) and float(empty["opacity"].max()) == 0.0
    assert bool(((empty["depth"] > 0.5 * TINY.far) & (empty["depth"] <= TINY.far + 1e-3)).all())


def test_occupancy_grid_shape_and_range():
    model = make_model().eval()
    images, k, e = make_inputs()
    with torch.no_grad():
        out = model(images, k, e)
        spec = OccGridSpec()
        prob = occupancy_probability(model, out["field"], spec)
        small = OccGridSpec((-4.0, 4.0), (-4.0, 4.0), (-1.0, 1.0), (4, 4, 2))  # 2 m voxels
        centre = occupancy_probability(model, out["field"], small)
        sub = occupancy_probability(model, out["field"], small, subsamples=3)  # includes the centre
        z_sub = occupancy_probability(model, out["field"], small, subsamples=(1, 1, 3))  # so does this
    assert prob.shape == (1, 200, 200, 16)
    assert float(prob.min()) >= 0.0 and float(prob.max()) <= 1.0 and float(prob.max()) > 0.0
    assert np.allclose(spec.voxel_size, (0.4, 0.4, 0.4))
    assert bool((sub >= centre - 1e-6).all()) and bool((sub >= z_sub - 1e-6).all())
    assert bool((z_sub >= centre - 1e-6).all())
    # the probability is 1 - exp(-sigma * voxel size) at the centre
    sigma = model.query_density(out["field"], small.centres()[None])
    assert torch.allclose(centre.reshape(-1), 1 - torch.exp(-sigma[0] * 2.0), atol=1e-6)


@pytest.mark.parametrize("options", [{"lookup": "trilinear"}, {"descriptor": "internal"}])
def test_config_options_run(options):
    config = replace(TINY, **options)
    model = make_model(config).eval()
    images, k, e = make_inputs(config)
    with torch.no_grad():
        out = model(images, k, e)
    assert torch.isfinite(out["depth"]).all() and torch.isfinite(out["rgb"]).all()
    features = model.query_features(out["field"], torch.randn(1, 5, 3) * 5)
    assert features.shape == (1, 5, config.feature_dim)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    model = make_model().eval()
    images, k, e = make_inputs()
    with torch.no_grad():
        cpu = model(images, k, e)
        gpu = model.cuda()(images.cuda(), k.cuda(), e.cuda())
    assert gpu["depth"].device.type == "cuda"
    assert torch.allclose(cpu["depth"], gpu["depth"].cpu(), atol=1e-2, rtol=1e-3)
