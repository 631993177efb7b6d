"""Checkpoints: round trip (weights, config, extras) and clear errors for corrupt or foreign files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from distillnerf.checkpoint import export_checkpoint, load_checkpoint, save_checkpoint
from distillnerf.cli import main as cli_main
from distillnerf.config import load_model_config
from distillnerf.model import DistillNeRF
from distillnerf.rig import load_rig


def test_round_trip_restores_weights_config_and_extras(tmp_path):
    config = load_model_config("tiny")
    torch.manual_seed(0)
    model = DistillNeRF(config).eval()
    path = save_checkpoint(tmp_path / "sub" / "model.pt", model, config, {"step": 12, "reducer": {"mean": [1.0]}})
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))
    loaded, loaded_config, extras = load_checkpoint(path)
    assert loaded_config == config and extras == {"step": 12, "reducer": {"mean": [1.0]}}
    assert not loaded.training
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    rig = load_rig("nuscenes").resized(config.input_width, config.input_height)
    k = torch.tensor(np.stack([c.intrinsics for c in rig.cameras]), dtype=torch.float32)[None]
    e = torch.tensor(np.stack([c.cam_to_ego for c in rig.cameras]), dtype=torch.float32)[None]
    images = torch.rand(1, 6, 3, config.input_height, config.input_width)
    with torch.no_grad():
        assert torch.allclose(model(images, k, e)["depth"], loaded(images, k, e)["depth"], atol=1e-6)


def test_saving_over_an_existing_checkpoint_replaces_it(tmp_path):
    config = load_model_config("tiny")
    model = DistillNeRF(config)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, config, {"step": 1})
    save_checkpoint(path, model, config, {"step": 2})
    assert load_checkpoint(path)[2]["step"] == 2


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", None])
def test_corrupt_file_gives_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content is None:  # a real torch file, but not ours
        torch.save({"weights": torch.zeros(3)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(path)


def test_truncated_checkpoint_gives_a_clear_error(tmp_path):
    config = load_model_config("tiny")
    path = save_checkpoint(tmp_path / "model.pt", DistillNeRF(config), config, {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable DistillNeRF checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_export_takes_a_config_files_inference_settings_only(tmp_path):
    config = load_model_config("tiny")
    torch.manual_seed(0)
    model = DistillNeRF(config).eval()
    trained = save_checkpoint(tmp_path / "model.pt", model, config, {"step": 5})
    tuned_yaml = tmp_path / "tiny_tuned.yaml"
    tuned_yaml.write_text(yaml.safe_dump({**config.to_dict(), "occupancy_threshold": 0.2,
                                          "occupancy_subsamples": [1, 1, 2]}))
    assert cli_main(["export", "--checkpoint", str(trained), "--model-config", str(tuned_yaml),
                     "--out", str(tmp_path / "shipped.pt")]) == 0
    loaded, loaded_config, extras = load_checkpoint(tmp_path / "shipped.pt")
    assert loaded_config.occupancy_threshold == 0.2 and loaded_config.occupancy_subsamples == (1, 1, 2)
    assert extras == {"step": 5}
    for name, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    other_yaml = tmp_path / "tiny_wider.yaml"
    other_yaml.write_text(yaml.safe_dump({**config.to_dict(), "mlp_hidden": config.mlp_hidden * 2}))
    with pytest.raises(ValueError, match="mlp_hidden"):
        export_checkpoint(trained, tmp_path / "bad.pt", load_model_config(other_yaml))
    assert cli_main(["export", "--checkpoint", str(trained), "--model-config", str(other_yaml),
                     "--out", str(tmp_path / "bad.pt")]) == 2
    assert not (tmp_path / "bad.pt").exists()


def test_export_changes_lets_a_listed_setting_differ_on_purpose(tmp_path):
    """A setting recalibrated after training (the candidates' spacing, say) reaches the checkpoint only when listed;
    the weights are unchanged, and a listed change they do not fit is refused."""
    config = load_model_config("tiny")
    torch.manual_seed(0)
    model = DistillNeRF(config).eval()
    trained = save_checkpoint(tmp_path / "model.pt", model, config, {"step": 5})
    spaced = tmp_path / "tiny_spaced.yaml"
    spaced.write_text(yaml.safe_dump({**config.to_dict(), "candidate_max_step": 1.5}))
    args = ["export", "--checkpoint", str(trained), "--model-config", str(spaced), "--out", str(tmp_path / "a.pt")]
    assert cli_main(args) == 2 and not (tmp_path / "a.pt").exists()
    assert cli_main(args + ["--changes", "candidate_max_step"]) == 0
    loaded, loaded_config, extras = load_checkpoint(tmp_path / "a.pt")
    assert loaded_config.candidate_max_step == 1.5 and loaded.config.candidate_max_step == 1.5
    assert extras == {"step": 5}
    for name, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    with pytest.raises(ValueError, match="not model config settings"):
        export_checkpoint(trained, tmp_path / "b.pt", load_model_config(spaced), ["candidate_step"])
    wider = tmp_path / "tiny_wider.yaml"
    wider.write_text(yaml.safe_dump({**config.to_dict(), "mlp_hidden": config.mlp_hidden * 2}))
    with pytest.raises(ValueError, match="do not fit"):
        export_checkpoint(trained, tmp_path / "c.pt", load_model_config(wider), ["mlp_hidden"])
    assert not (tmp_path / "c.pt").exists()
