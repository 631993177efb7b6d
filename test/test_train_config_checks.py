"""Training configs are typed and range-checked: a bad value is one clear line and exit 2, never a traceback or a
run that trains nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from distillnerf.cli import main

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load((REPO / "training" / "distillnerf_train" / "configs" / "train" / "tiny_test.yaml").read_text())
    data["data"]["dataroot"] = str(tmp_path / "nowhere")
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def set_key(section, key, value):
    def edit(data):
        data[section][key] = value
    return edit


CASES = {
    "betas a number": (set_key("optim", "betas", 0.9), "betas: expected a list"),
    "a weight as a list": (set_key("losses", "rgb_l1", [1, 2]), "rgb_l1: expected a number"),
    "a section as a number": (lambda d: d.__setitem__("optim", 5), "optim config: expected a mapping"),
    "batch size zero": (set_key("train", "batch_size", 0), "batch_size: 0 is outside"),
    "negative steps": (set_key("train", "max_steps", -5), "max_steps: -5 is outside"),
    "negative lr": (set_key("optim", "lr", -1.0), "lr: -1.0 is outside"),
    "unknown device": (set_key("train", "device", "gpu"), "device: must be one of"),
    "unknown schedule": (set_key("schedule", "kind", "linear"), "kind: must be one of"),
    "unknown dense depth": (set_key("data", "dense_depth", "lidar"), "data config: dense_depth: must be one of"),
    "negative weight": (set_key("losses", "entropy", -0.1), "entropy must not be negative"),
    "float steps": (set_key("train", "max_steps", 2.5), "max_steps: expected a whole number"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_training_config_is_one_line_and_exit_2(case, tmp_path, capsys):
    edit, message = CASES[case]
    assert main(["train", "--config", str(write(tmp_path, edit)), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run" / "model.pt").exists()


def test_bad_yaml_is_one_line(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("model: tiny\noptim: {lr: [\n")
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not valid YAML" in err and len(err.splitlines()) == 1


def test_yaml_scalars_are_read_as_meant():
    from distillnerf_train.config import train_config_from_dict

    config = train_config_from_dict({"optim": {"lr": "1e-4", "betas": [0, 0.9]}, "data": {"scenes": None,
                                     "features_dir": "x"}})
    assert config.optim.lr == 1e-4 and config.optim.betas == (0.0, 0.9) and config.data.features_dir == "x"


@pytest.mark.parametrize("command, extra, bad, expected", [
    ("teacher", ["--version", "v1.0-synth"], {"optim": {"losses": {"rgbb": 1.0}}}, "losses: unknown keys rgbb"),
    ("teacher", ["--version", "v1.0-synth"], {"size": [228]}, "size: expected 2 values"),
    ("features", ["--version", "v1.0-synth", "--clip-model", "ViT-B-16", "--clip-weights", __file__],
     {"fit_max_images": "many"}, "fit_max_images: expected a whole number"),
])
def test_teacher_and_features_configs_are_checked_the_same_way(tmp_path, capsys, command, extra, bad, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main([command, "--data", str(tmp_path), *extra, "--config", str(path)]) == 2
    error = capsys.readouterr().err
    assert expected in error and "Traceback" not in error and len(error.strip().splitlines()) == 1


def test_base_config_is_folded_in_section_by_section(tmp_path):
    from distillnerf_train.config import load_train_config

    base = yaml.safe_load((REPO / "training" / "distillnerf_train" / "configs" / "train" / "tiny_test.yaml").read_text())
    (tmp_path / "parent.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "child.yaml").write_text(f"base: {tmp_path / 'parent.yaml'}\ntrain:\n  max_steps: 7\n")
    parent, child = load_train_config(tmp_path / "parent.yaml"), load_train_config(tmp_path / "child.yaml")
    assert child.train.max_steps == 7 and parent.train.max_steps != 7
    # everything the child does not name is the parent's, within a section too
    assert child.train.out == parent.train.out and child.losses == parent.losses and child.data == parent.data
    (tmp_path / "loop.yaml").write_text(f"base: {tmp_path / 'loop.yaml'}\n")
    with pytest.raises(ValueError, match="loops"):
        load_train_config(tmp_path / "loop.yaml")
