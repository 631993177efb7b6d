"""The held-out suite: seeds never used for training, every seed scored, the worst one reported."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from distillnerf.checkpoint import save_checkpoint
from distillnerf.cli import main
from distillnerf.config import load_model_config
from distillnerf.model import DistillNeRF
from distillnerf_train.suite import SUITE_METRICS, load_suite

REPO = Path(__file__).resolve().parents[1]
TRAIN_CONFIGS = REPO / "training" / "distillnerf_train" / "configs" / "train"


def test_heldout_seeds_are_never_training_seeds():
    heldout = set(load_suite("heldout").seeds)
    assert len(heldout) >= 3
    recipes = [line for path in sorted(TRAIN_CONFIGS.glob("*.yaml"))
               for line in path.read_text().splitlines() if "distillnerf synth" in line]
    assert recipes, "training configs document how their synthetic data was made"
    training_seeds = {int(m.group(1)) for line in recipes for m in [re.search(r"--seed (\d+)", line)] if m}
    assert training_seeds and not training_seeds & heldout


def test_suite_scores_every_seed_and_reports_the_worst(tmp_path, capsys, monkeypatch):
    suite = tmp_path / "mini.yaml"
    suite.write_text(f"seeds: [5, 6]\nscenes: 1\nframes: 2\nsize: [64, 36]\ncache_dir: {tmp_path / 'cache'}\n")
    torch.manual_seed(0)
    config = load_model_config("tiny")
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", DistillNeRF(config), config)
    assert main(["eval", "--checkpoint", str(checkpoint), "--suite", str(suite), "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["seeds"] == [5, 6] and set(result["reports"]) == {"5", "6"}
    absrel = result["summary"]["AbsRel vs exact depth"]
    values = absrel["per_seed"]
    assert absrel["worst"] == max(values.values()) and absrel["worst_seed"] in (5, 6)
    assert absrel["mean"] == pytest.approx(sum(values.values()) / 2)
    iou = result["summary"]["occupancy IoU %"]
    assert iou["worst"] == min(iou["per_seed"].values())
    assert {label for _, label, _ in SUITE_METRICS} >= set(result["summary"])
    # cached: the second run generates nothing new and scores the same
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(cached) == 2 and all((tmp_path / "cache" / name / ".complete").is_file() for name in cached)
    assert main(["eval", "--checkpoint", str(checkpoint), "--suite", str(suite), "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert "worst" in table and "AbsRel vs exact depth" in table
    assert main(["eval", "--checkpoint", str(checkpoint), "--device", "cpu"]) == 2
    assert "--data DIR or --suite NAME" in capsys.readouterr().err
