"""Several dataroots as one training set (data.extra_dataroots): order, the trainer's view, and refusals."""

from __future__ import annotations

import shutil

import pytest
import torch

from distillnerf.config_files import load_yaml
from distillnerf_train.config import train_config_from_dict
from distillnerf_train.data import DataConfig, training_keyframes
from distillnerf_train.trainer import Trainer


@pytest.fixture(scope="module")
def two_roots(tmp_path_factory):
    """Two small synthetic dataroots of different seeds: 3 and 2 keyframes."""
    synth = pytest.importorskip("distillnerf_train.synth", reason="the synthetic world is not available")
    first, second = tmp_path_factory.mktemp("world_a"), tmp_path_factory.mktemp("world_b")
    synth.generate_dataset(first, scenes=1, frames=3, seed=0, size=(64, 36))
    synth.generate_dataset(second, scenes=1, frames=2, seed=7, size=(64, 36))
    return first, second


def data_config(first, *extra) -> DataConfig:
    return DataConfig(dataroot=str(first), extra_dataroots=[str(r) for r in extra], version="v1.0-synth",
                      input_size=(64, 36), render_size=(32, 18))


def test_keyframes_of_every_root_in_order(two_roots):
    first, second = two_roots
    alone = [training_keyframes(data_config(root)) for root in two_roots]
    combined = training_keyframes(data_config(first, second))
    assert len(combined) == len(alone[0]) + len(alone[1]) == 5
    expected = [s[0] for s in alone[0].samples] + [s[0] for s in alone[1].samples]
    assert [combined[i]["sample_token"] for i in range(len(combined))] == expected
    # an item of the second root is that root's item, images and depth targets included
    item, reference = combined[3], alone[1][0]
    assert torch.equal(item["images"], reference["images"]) and torch.equal(item["lidar_depth"], reference["lidar_depth"])


def test_the_trainer_samples_over_all_roots(two_roots, tmp_path):
    first, second = two_roots
    data = load_yaml("tiny_test", "train")
    data["data"].update({"dataroot": str(first), "extra_dataroots": [str(second)], "version": "v1.0-synth"})
    data["train"].update({"max_steps": 1, "checkpoint_every": 0, "image_every": 0})
    trainer = Trainer(train_config_from_dict(data), out_dir=str(tmp_path / "run"))
    assert len(trainer.dataset) == 5
    assert torch.isfinite(torch.tensor(trainer.train()["loss"]))


def test_roots_with_different_targets_or_reducers_are_refused(two_roots, tmp_path):
    first, second = (tmp_path / "a", tmp_path / "b")
    for source, target in zip(two_roots, (first, second)):
        shutil.copytree(source, target)
    (second / "features").mkdir()
    torch.save({"reducer": {"mean": torch.zeros(4)}, "class_targets": torch.eye(4)}, second / "features" / "reducer.pt")
    with pytest.raises(ValueError, match="same kinds of targets"):
        training_keyframes(data_config(first, second))
    (first / "features").mkdir()
    torch.save({"reducer": {"mean": torch.ones(4)}, "class_targets": torch.eye(4)}, first / "features" / "reducer.pt")
    with pytest.raises(ValueError, match="reducer differs"):
        training_keyframes(data_config(first, second))
    torch.save({"reducer": {"mean": torch.zeros(4)}, "class_targets": torch.eye(4)}, first / "features" / "reducer.pt")
    assert len(training_keyframes(data_config(first, second))) == 5


@pytest.mark.parametrize("key, value", [("scenes", ["scene-0000"]), ("features_dir", "/x"), ("gt_dir", "/y")])
def test_per_root_settings_cannot_be_combined_with_extra_roots(key, value):
    with pytest.raises(ValueError, match=f"{key}.*extra_dataroots"):
        DataConfig.from_dict({"dataroot": "a", "extra_dataroots": ["b"], key: value})
    assert DataConfig.from_dict({"dataroot": "a", key: value}).extra_dataroots == []
