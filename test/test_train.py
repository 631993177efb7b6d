"""Trainer: schedule and data order, atomic checkpoints, SIGKILL mid-run then exact resume, torchrun DDP on CPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from distillnerf.checkpoint import load_checkpoint
from distillnerf.cli import main as cli_main
from distillnerf.config_files import load_yaml
from distillnerf_train.config import load_train_config, train_config_from_dict
from distillnerf.checkpoint import atomic_torch_save
from distillnerf_train.reproducibility import StepBatchSampler, load_train_state, lr_multiplier
from distillnerf_train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    """A small synthetic dataroot (no dependency on ../shared): 3 keyframes at the tiny model's input size."""
    synth = pytest.importorskip("distillnerf_train.synth", reason="the synthetic world is not available")
    root = tmp_path_factory.mktemp("synth")
    synth.generate_dataset(root, scenes=1, frames=3, seed=0, size=(64, 36))
    return root


def _write_config(tmp_path: Path, dataroot: Path, **train) -> Path:
    data = load_yaml("tiny_test", "train")
    data["data"]["dataroot"] = str(dataroot)
    data["data"]["version"] = "v1.0-synth"
    data["train"].update({"image_every": 0, "checkpoint_every": 1, **train})
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def test_configs_parse_and_schedule():
    for name in ("tiny_test", "cpu_synth", "cpu_synth_no_dense_depth", "cpu_synth_finetune", "paper"):
        config = load_train_config(name)
        assert tuple(config.optim.betas) == (0.0, 0.99) and config.optim.grad_clip == 35.0
    assert load_train_config("paper").optim.lr == pytest.approx(2e-4)  # the official code's default
    for stage in ("", "_finetune"):
        shipped = load_train_config(f"cpu_synth{stage}")
        ablation = load_train_config(f"cpu_synth_no_dense_depth{stage}")
        assert ablation.losses.dense_depth == 0.0 and shipped.losses.dense_depth > 0.0
        # The ablation differs from the shipped run only in the dense-depth weight (and its folders).
        differences = {key: (value, shipped.to_dict()[key]) for key, value in ablation.to_dict().items()
                       if value != shipped.to_dict()[key]}
        assert set(differences) == {"losses", "train", "source"}
        assert {k for k, v in ablation.to_dict()["losses"].items()
                if shipped.to_dict()["losses"][k] != v} == {"dense_depth"}
        assert {k for k, v in ablation.to_dict()["train"].items()
                if shipped.to_dict()["train"][k] != v} <= {"out", "init_from"}
    # The dense-depth ablation: exact depth, teacher depth and none, equal in everything else.
    runs = {kind: load_train_config(f"ablation_dense_{kind}").to_dict() for kind in ("exact", "teacher", "none")}
    assert [runs[k]["data"]["dense_depth"] for k in runs] == ["gt", "teacher", "none"]
    assert runs["none"]["losses"]["dense_depth"] == 0.0 < runs["exact"]["losses"]["dense_depth"]
    for kind in ("teacher", "none"):
        assert {k for k, v in runs[kind]["data"].items() if runs["exact"]["data"][k] != v} == {"dense_depth"}
        assert {k for k, v in runs[kind]["losses"].items() if runs["exact"]["losses"][k] != v} <= {"dense_depth"}
        assert {k for k, v in runs[kind]["train"].items() if runs["exact"]["train"][k] != v} == {"out"}
        assert runs[kind]["optim"] == runs["exact"]["optim"] and runs[kind]["schedule"] == runs["exact"]["schedule"]
    # Stage 8 and its camera-dropout pair differ only in the KDBTS distillation weight (and the output folder).
    plain, dropout = (load_train_config(n).to_dict() for n in ("cpu_synth_stage8", "cpu_synth_stage8_dropout"))
    assert {k for k, v in dropout["losses"].items() if plain["losses"][k] != v} == {"density_distill"}
    assert {k for k, v in dropout["train"].items() if plain["train"][k] != v} == {"out"}
    assert all(dropout[s] == plain[s] for s in ("data", "optim", "schedule", "model"))
    # Stage 2 starts from stage 1's output.
    stage1, stage2 = load_train_config("cpu_synth"), load_train_config("cpu_synth_finetune")
    assert stage2.train.init_from == f"{stage1.train.out}/model.pt"
    with pytest.raises(ValueError, match="unknown key"):
        train_config_from_dict({"optim": {"learning_rate": 1}})
    with pytest.raises(ValueError, match="unknown section"):
        train_config_from_dict({"optimiser": {}})
    config = train_config_from_dict({"schedule": {"kind": "cosine", "warmup_steps": 2, "min_ratio": 0.1},
                                     "train": {"max_steps": 12}})
    m = lr_multiplier(config)
    assert m(0) == pytest.approx(0.5) and m(1) == pytest.approx(1.0) and m(2) == pytest.approx(1.0)
    assert m(12) == pytest.approx(0.1) and m(7) == pytest.approx(0.55)


def test_step_sampler_is_a_function_of_step():
    full = list(StepBatchSampler(5, 2, seed=3, start=0, stop=7))
    resumed = list(StepBatchSampler(5, 2, seed=3, start=4, stop=7))
    assert full[4:] == resumed
    # each epoch is a permutation
    flat = [i for batch in full for i in batch]
    assert sorted(flat[:5]) == list(range(5)) and sorted(flat[5:10]) == list(range(5))
    ranks = [list(StepBatchSampler(6, 1, 0, 0, 3, rank=r, world=2)) for r in range(2)]
    assert sorted(i for r in ranks for b in r for i in b) == list(range(6))  # ranks split each epoch


def test_atomic_save_and_corrupt_state(tmp_path):
    path = tmp_path / "state.pt"
    atomic_torch_save({"format": "x"}, path)
    assert path.is_file() and not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(ValueError, match="not a distillnerf training checkpoint"):
        load_train_state(path)
    path.write_bytes(b"\x80garbage")
    with pytest.raises(ValueError, match="corrupt training checkpoint"):
        load_train_state(path)
    with pytest.raises(FileNotFoundError):
        load_train_state(tmp_path / "absent.pt")


def _params(state: dict) -> dict:
    return {k: v.clone() for k, v in state.items()}


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_exact(tmp_path, synth_root, capsys):
    steps = 4
    config_file = _write_config(tmp_path, synth_root, max_steps=steps)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = Trainer(load_train_config(config_file), out_dir=str(tmp_path / "reference"))
        summary = reference.train()
        assert summary["step"] == steps and summary["loss"] > 0
        assert "dense_depth" in summary["terms"]  # exact synthetic depth is the dense target
        expected_model = _params(reference.model.state_dict())
        expected_optim = reference.optimizer.state_dict()

        killed_out = tmp_path / "killed"
        child = subprocess.Popen([sys.executable, "-m", "distillnerf.cli", "train", "--config", str(config_file),
                                  "--out", str(killed_out)], env=_env(), cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        state_file = killed_out / "checkpoints" / "last.pt"
        deadline = time.monotonic() + 300
        killed_at = None
        while time.monotonic() < deadline and child.poll() is None:
            if state_file.is_file():
                killed_at = torch.load(state_file, weights_only=False)["step"]
                if 1 <= killed_at < steps:
                    os.kill(child.pid, signal.SIGKILL)
                    break
            time.sleep(0.005)
        assert child.wait(timeout=60) == -signal.SIGKILL, "training finished before it could be killed"
        resumed_state = load_train_state(state_file)
        assert 1 <= resumed_state["step"] < steps

        resumed = Trainer(load_train_config(config_file), out_dir=str(killed_out))
        resumed.resume()
        assert resumed.step == resumed_state["step"]
        resumed.train()
    finally:
        torch.set_num_threads(threads)
    got = resumed.model.state_dict()
    assert got.keys() == expected_model.keys()
    for key, value in expected_model.items():
        assert torch.equal(got[key], value), f"parameter {key} differs after resume"
    got_optim = resumed.optimizer.state_dict()
    for index, state in expected_optim["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(got_optim["state"][index][name]), torch.as_tensor(value)), name
    # the exported inference checkpoint loads with the model library and carries the weights
    model, config, extras = load_checkpoint(killed_out / "model.pt")
    assert config.name == "tiny" and extras["step"] == steps
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected_model[key])
    assert list((killed_out / "tensorboard").iterdir())

    # resuming a finished run is a no-op; a corrupt state file is a clear CLI error
    (killed_out / "checkpoints" / "last.pt").write_bytes(b"truncated")
    assert cli_main(["train", "--config", str(config_file), "--out", str(killed_out), "--resume"]) == 2
    assert "corrupt training checkpoint" in capsys.readouterr().err


def test_cli_errors(tmp_path, capsys):
    assert cli_main(["train", "--config", str(tmp_path / "absent.yaml")]) == 2
    assert "no config file" in capsys.readouterr().err
    config_file = _write_config(tmp_path, tmp_path / "no-data")
    assert cli_main(["train", "--config", str(config_file)]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_ddp_two_cpu_processes(tmp_path, synth_root):
    config_file = _write_config(tmp_path, synth_root, max_steps=2, checkpoint_every=0)
    out = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
         "distillnerf.cli", "train", "--config", str(config_file), "--out", str(out), "--json"],
        env=_env(), cwd=REPO, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    state = load_train_state(out / "checkpoints" / "last.pt")
    assert state["step"] == 2 and state["world_size"] == 2
    assert (out / "checkpoints" / "rng_rank1.pt").is_file()
    model, _, _ = load_checkpoint(out / "model.pt")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_init_from_starts_fine_tuning_from_a_checkpoint(tmp_path, synth_root):
    config = load_train_config(_write_config(tmp_path, synth_root, max_steps=1))
    first = Trainer(config, out_dir=str(tmp_path / "a"))
    first.train()
    tuned = Trainer(replace(config, train=replace(config.train, init_from=str(first.model_path))),
                    out_dir=str(tmp_path / "b"))
    assert tuned.step == 0
    for name, value in first.model.state_dict().items():
        assert torch.equal(value, tuned.model.state_dict()[name]), name
    fresh = Trainer(config, out_dir=str(tmp_path / "c"))
    assert any(not torch.equal(v, fresh.model.state_dict()[k]) for k, v in first.model.state_dict().items())
    other = replace(config, model="cpu", train=replace(config.train, init_from=str(first.model_path)))
    with pytest.raises(ValueError, match="differs"):
        Trainer(other, out_dir=str(tmp_path / "d"))


def test_init_changes_lets_a_run_change_the_grid_geometry_on_purpose(tmp_path, synth_root):
    """Fine-tuning into a new contraction radius: the listed setting may differ, nothing else, and the weights
    must still fit."""
    import yaml

    config = load_train_config(_write_config(tmp_path, synth_root, max_steps=1))
    first = Trainer(config, out_dir=str(tmp_path / "a"))
    first.train()
    tiny = yaml.safe_load((Path(__file__).parents[1] / "model/distillnerf/configs/model/tiny.yaml").read_text())
    model_file = tmp_path / "tiny_wider.yaml"
    model_file.write_text(yaml.safe_dump({**tiny, "contraction_radius_xy": tiny["contraction_radius_xy"] * 0.8}))
    wider = replace(config, model=str(model_file), train=replace(config.train, init_from=str(first.model_path)))
    with pytest.raises(ValueError, match="contraction_radius_xy.*init_changes"):
        Trainer(wider, out_dir=str(tmp_path / "b"))
    allowed = replace(wider, train=replace(wider.train, init_changes=["contraction_radius_xy"]))
    tuned = Trainer(allowed, out_dir=str(tmp_path / "c"))
    assert tuned.model.config.contraction_radius_xy == pytest.approx(tiny["contraction_radius_xy"] * 0.8)
    for name, value in first.model.state_dict().items():
        assert torch.equal(value, tuned.model.state_dict()[name]), name
    typo = replace(wider, train=replace(wider.train, init_changes=["contraction_radius"]))
    with pytest.raises(ValueError, match="not model config settings"):
        Trainer(typo, out_dir=str(tmp_path / "d"))


def test_export_extras_carry_the_feature_reducer(tmp_path):
    """The features command's reducer.pt reaches the inference checkpoint as 'reducer' and 'text_encoder'."""
    import types

    (tmp_path / "features").mkdir()
    reducer = {"mean": torch.zeros(8), "components": torch.eye(8)[:, :4]}
    spec = {"model_name": "ViT-S-32", "weights_path": "/x/clip.pt"}
    torch.save({"reducer": reducer, "text_encoder": spec, "size": [448, 252]}, tmp_path / "features" / "reducer.pt")
    config = train_config_from_dict({"data": {"dataroot": str(tmp_path)}})
    extras = Trainer.export_extras(types.SimpleNamespace(step=3, config=config))
    assert extras["step"] == 3 and extras["text_encoder"] == spec
    assert torch.equal(extras["reducer"]["components"], reducer["components"]) and "size" not in extras
    (tmp_path / "features" / "reducer.pt").unlink()
    assert "reducer" not in Trainer.export_extras(types.SimpleNamespace(step=3, config=config))
