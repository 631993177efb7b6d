"""Model configs: the paper's numbers, validation of typos and inconsistent sizes, overrides."""

from __future__ import annotations

import pytest

from distillnerf.config import ModelConfig, config_from_dict, load_model_config


def test_paper_config_has_the_official_sizes():
    c = load_model_config("paper")
    assert (c.input_width, c.input_height, c.render_width, c.render_height) == (228, 128, 114, 64)
    assert c.num_bins == 286 and c.num_candidates == 15 and c.candidate_first_k == -8
    assert (c.coarse_resolution, c.fine_resolution, c.level_channels) == (128, 512, 32)
    assert c.num_bins + c.fine_samples == 316
    assert (c.contraction_radius_xy, c.contraction_radius_z, c.contraction_alpha) == (50.0, 6.4, 0.8)
    assert c.feature_dim == 64 and c.feature_head


@pytest.mark.parametrize("name", ["paper", "cpu", "tiny"])
def test_every_shipped_config_loads_and_round_trips(name):
    c = load_model_config(name)
    assert c.name == name
    assert config_from_dict(c.to_dict()) == c
    assert len(c.camera_names) == 6 and c.render_width <= c.input_width


def test_overrides_and_validation():
    assert load_model_config("tiny", lookup="trilinear").lookup == "trilinear"
    with pytest.raises(ValueError, match="unknown keys"):
        config_from_dict({"input_widht": 10})
    with pytest.raises(ValueError, match="power of two"):
        ModelConfig(fine_resolution=500).validate()
    with pytest.raises(ValueError, match="backbone"):
        load_model_config("tiny", backbone="resnet")
    with pytest.raises(FileNotFoundError):
        load_model_config("no-such-model-config")
    # Choices are Literal annotations, read by the same mechanism as every config file.
    with pytest.raises(ValueError, match="model config 'x': lookup: must be one of 'nearest', 'trilinear'"):
        config_from_dict({"lookup": "cubic"}, name="x")
    with pytest.raises(ValueError, match="feature_stride: must be one of 1, 2, 4"):
        load_model_config("tiny", feature_stride=3)
    with pytest.raises(ValueError, match="fpn_channels: expected a whole number"):
        config_from_dict({"fpn_channels": 64.5})


def test_inference_settings_do_not_change_the_weights_layout():
    tiny = load_model_config("tiny")
    tuned = load_model_config("tiny", occupancy_threshold=0.1, occupancy_subsamples=(1, 1, 2), visibility_margin=2.0,
                              class_score_offsets={"car": 0.5, "traffic_cone": -1})
    assert tuned.occupancy_subsamples == (1, 1, 2) and tuned.same_weights_layout(tiny)
    assert tuned.class_score_offsets == {"car": 0.5, "traffic_cone": -1.0}
    assert config_from_dict(tuned.to_dict()) == tuned  # a checkpoint's copy reads back the same
    with pytest.raises(ValueError, match="class_score_offsets: unknown classes automobile"):
        load_model_config("tiny", class_score_offsets={"automobile": 1.0})
    assert not load_model_config("tiny", mlp_hidden=tiny.mlp_hidden * 2).same_weights_layout(tiny)
    with pytest.raises(ValueError, match="occupancy_subsamples"):
        load_model_config("tiny", occupancy_subsamples=(1, 0, 2))
