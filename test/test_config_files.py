"""Config lookup: each package's configs are found inside it, DISTILLNERF_CONFIG_PATH overrides, misses say where
the lookup looked, and the ROS package installs every config folder to its share folder."""

from __future__ import annotations

import os
import runpy
from importlib import resources
from pathlib import Path

import pytest
import setuptools

from distillnerf.config_files import config_dirs, load_yaml, registered_config_roots, resolve_config

REPO = Path(__file__).resolve().parents[1]
MODEL_CONFIGS = Path(resources.files("distillnerf") / "configs")
TRAIN_CONFIGS = Path(resources.files("distillnerf_train") / "configs")


@pytest.mark.parametrize("name, subdir, root", [
    ("cpu", "model", MODEL_CONFIGS),
    ("nuscenes", "rigs", MODEL_CONFIGS),
    ("rigs/ddad", "", MODEL_CONFIGS),
    ("clip_tiny.yaml", "foundation", MODEL_CONFIGS),
    ("cpu_synth_stage5", "train", TRAIN_CONFIGS),
    ("train_mixed", "synth", TRAIN_CONFIGS),
    ("heldout", "eval", TRAIN_CONFIGS),
    ("demo", "", REPO / "config"),
    ("distillnerf.param.yaml", "", REPO / "config"),
])
def test_each_name_resolves_inside_the_package_that_owns_it(name, subdir, root):
    found = resolve_config(name, subdir)
    assert found.is_file() and found.resolve().is_relative_to(root.resolve()), found


def test_every_package_registers_its_root_through_entry_points():
    roots, unavailable = registered_config_roots()
    resolved = [root.resolve() for root in roots]
    for root in (MODEL_CONFIGS, TRAIN_CONFIGS, REPO / "config"):
        assert root.resolve() in resolved, f"{root} is not a registered config root: {roots}"
    assert not unavailable
    assert len(config_dirs()) == len({d.resolve() for d in config_dirs()}), "a folder is searched twice"


def test_config_path_overrides_and_existing_paths_are_used_as_given(tmp_path, monkeypatch):
    (tmp_path / "model").mkdir()
    override = tmp_path / "model" / "cpu.yaml"
    override.write_text("name: cpu\n")
    monkeypatch.setenv("DISTILLNERF_CONFIG_PATH", os.pathsep.join([str(tmp_path / "missing"), str(tmp_path)]))
    assert resolve_config("cpu", "model") == override
    assert config_dirs()[0] == tmp_path
    assert resolve_config(MODEL_CONFIGS / "model" / "tiny.yaml", "model") == MODEL_CONFIGS / "model" / "tiny.yaml"
    assert load_yaml("tiny", "model")["name"] == "tiny"  # not overridden: the package's own


def test_a_missing_config_names_every_place_it_looked():
    with pytest.raises(FileNotFoundError) as error:
        resolve_config("no-such-config", "model")
    message = str(error.value)
    assert "no-such-config" in message
    assert str(MODEL_CONFIGS / "model" / "no-such-config.yaml") in message


def test_the_ros_package_installs_every_config_folder_to_its_share(monkeypatch):
    captured = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.chdir(REPO)  # setup.py globs relative to the repository, as setuptools runs it
    runpy.run_path(str(REPO / "setup.py"))
    installed = {(folder, Path(file).name) for folder, files in captured["data_files"] for file in files}
    for root in (MODEL_CONFIGS, TRAIN_CONFIGS):
        for file in root.glob("*/*.yaml"):
            assert (f"share/distillnerf_ros/config/{file.parent.name}", file.name) in installed, file
    for file in ["distillnerf.param.yaml", "demo.yaml", "distillnerf.rviz"]:
        assert ("share/distillnerf_ros/config", file) in installed
    assert "distillnerf_ros = distillnerf_ros.config_root:config_root" in captured["entry_points"]["distillnerf.configs"]
