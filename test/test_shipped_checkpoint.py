"""The checkpoint shipped in model/distillnerf/checkpoints loads with its text tower and runs the node's path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distillnerf.config import load_model_config
from distillnerf.perception import Perception
from distillnerf.rig import load_rig

SHIPPED = Path(__file__).resolve().parents[1] / "model" / "distillnerf" / "checkpoints" / "cpu.pt"


@pytest.fixture(scope="module")
def shipped() -> Perception:
    if not SHIPPED.is_file():
        pytest.skip(f"no shipped checkpoint at {SHIPPED}")
    return Perception.from_checkpoint(SHIPPED, device="cpu")


def test_shipped_checkpoint_carries_its_config_reducer_and_text_encoder(shipped):
    assert shipped.config.name == "cpu"
    # exported under distillnerf/configs/model/cpu.yaml, calibrated inference settings included (distillnerf export)
    assert shipped.config.to_dict() == load_model_config("cpu").to_dict()
    assert shipped.text_encoder is not None and shipped.reducer is not None
    # The text tower's weights are named relative to the checkpoint and found beside it.
    assert Path(shipped.text_encoder.weights_path).parent == SHIPPED.parent


def test_shipped_checkpoint_infers_and_answers_a_query(shipped):
    rig = load_rig("nuscenes").resized(228, 128)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (128, 228, 3), dtype=np.uint8) for _ in rig.cameras]
    result = shipped.infer(images, [c.intrinsics for c in rig.cameras], [c.cam_to_ego for c in rig.cameras])
    assert result.depth.shape == (6, 64, 114) and np.isfinite(result.depth).all() and (result.depth > 0).all()
    assert result.semantics.shape == (200, 200, 16)
    points, similarity = shipped.query("car")
    assert points.shape[0] == similarity.shape[0]
    assert np.all(np.abs(similarity) <= 1.0 + 1e-5)
