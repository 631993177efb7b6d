"""``cnn_precision``: the 2D CNNs under bfloat16 autocast where the device computes it natively, float32 at their
boundary, the same field and depths within bfloat16's tolerance, and plain float32 where bfloat16 is not native."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from distillnerf import precision
from distillnerf.config import ModelConfig, load_model_config
from distillnerf.model import DistillNeRF
from test_model_forward import TINY, make_inputs

NATIVE = precision.native_bfloat16("cpu")


def run(config, seed=0):
    torch.manual_seed(seed)
    model = DistillNeRF(config).eval()
    with torch.no_grad():
        return model(*make_inputs(config, seed=seed))


def test_cnn_precision_is_an_inference_setting():
    assert "cnn_precision" in ModelConfig.INFERENCE_SETTINGS
    assert TINY.same_weights_layout(replace(TINY, cnn_precision="bfloat16"))
    with pytest.raises(ValueError, match="cnn_precision"):
        replace(TINY, cnn_precision="float16").validate()


def test_no_autocast_where_bfloat16_is_not_native(monkeypatch):
    monkeypatch.setattr(precision, "native_bfloat16", lambda device_type: False)
    assert isinstance(precision.cnn_autocast("bfloat16", torch.device("cpu")), type(precision.cnn_autocast(
        "float32", torch.device("cpu"))))
    exact, emulated = run(TINY), run(replace(TINY, cnn_precision="bfloat16"))
    for key in ("depth", "opacity", "rgb", "coarse_depth"):
        assert torch.equal(exact[key], emulated[key]), key


@pytest.mark.skipif(not NATIVE, reason="this CPU has no native bfloat16 (AVX512-BF16 or AMX)")
def test_bfloat16_cnns_keep_float32_outputs_and_values():
    exact, fast = run(TINY), run(replace(TINY, cnn_precision="bfloat16"))
    for key in ("depth", "opacity", "rgb", "coarse_depth", "features"):
        assert fast[key].dtype == torch.float32, key
        assert torch.isfinite(fast[key]).all(), key
    # the field is built from float32 depth and features: same voxels, values within bfloat16's rounding
    voxels, fast_voxels = exact["field"].fine.keys.numel(), fast["field"].fine.keys.numel()
    assert abs(fast_voxels - voxels) <= 0.05 * voxels
    assert (fast["rgb"] - exact["rgb"]).abs().mean() < 0.01
    rel = ((fast["coarse_depth"] - exact["coarse_depth"]).abs() / exact["coarse_depth"]).mean()
    assert rel < 0.02


@pytest.mark.skipif(not NATIVE, reason="this CPU has no native bfloat16 (AVX512-BF16 or AMX)")
def test_bfloat16_cnns_train_in_float32_parameters():
    config = replace(TINY, cnn_precision="bfloat16")
    torch.manual_seed(0)
    model = DistillNeRF(config).train()
    out = model(*make_inputs(config))
    (out["rgb"].mean() + out["depth"].mean() * 1e-3).backward()
    grads = [p.grad for p in model.encoder.parameters() if p.requires_grad]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(g is None or g.dtype == torch.float32 for g in grads)


def test_shipped_cpu_config_names_a_valid_precision():
    assert load_model_config("cpu").cnn_precision in ("float32", "bfloat16")
