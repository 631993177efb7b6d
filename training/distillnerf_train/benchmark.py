"""The training-step figure of ``distillnerf bench``: forward, losses, backward and optimiser step of the training
package's own step module on one synthetic keyframe (the world rendered at the model's input size).

The model library finds this function through the ``distillnerf.bench`` entry-point group, so ``bench`` reports
a training step where the training package is installed and stays free of training imports otherwise.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from .config import load_train_config
from .data import NuScenesKeyframes
from .losses import DistillNeRFLoss
from .reproducibility import collate, to_device
from .train_step import TrainStep, class_prototypes

#: The losses of the shipped run (its stage-2 config), so the figure is what training actually pays per step.
BENCH_TRAIN_CONFIG = "cpu_synth_finetune"


def synthetic_sample(width: int, height: int, render_size: tuple[int, int], cameras: tuple[str, ...]
                     ) -> tuple[dict, torch.Tensor]:
    """One keyframe of the synthetic world (seed 0, scene 0) as a training batch of one, and the class prototypes
    of its feature targets."""
    import distillnerf

    from .features.semantic import write_semantic_targets
    from .synth.dataset import generate_dataset

    with tempfile.TemporaryDirectory(prefix="distillnerf-bench-") as root:
        generate_dataset(root, scenes=1, frames=1, seed=0, size=(width, height))
        write_semantic_targets(root, "clip_tiny", Path(distillnerf.__file__).parent / "checkpoints" / "clip_tiny_seed0.pt")
        config = load_train_config(BENCH_TRAIN_CONFIG).data
        dataset = NuScenesKeyframes(replace(config, dataroot=root, version="v1.0-synth", input_size=(width, height),
                                            render_size=render_size, cameras=list(cameras)))
        return collate([dataset[0]]), class_prototypes(Path(root) / "features")


def training_step(model, config, device: torch.device, warmup: int = 1, runs: int = 3) -> dict:
    """Median milliseconds of one optimiser step of ``model`` (trained in place on a copy of its weights)."""
    import copy

    train_config = load_train_config(BENCH_TRAIN_CONFIG)
    batch, prototypes = synthetic_sample(*config.input_size, config.render_size, tuple(config.camera_names))
    batch = to_device(batch, device)
    model = copy.deepcopy(model).to(device).train()
    step = TrainStep(model, DistillNeRFLoss(train_config.losses, prototypes), render_virtual=True).to(device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5,
                                 betas=tuple(train_config.optim.betas))
    amp = device.type == "cuda" and train_config.train.amp
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    times = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        for i in range(warmup + runs):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                total, _, _ = step(batch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000.0)
    return {"median_ms": statistics.median(times), "runs": runs, "losses": BENCH_TRAIN_CONFIG, "amp": amp,
            "sample": "synthetic world, seed 0, scene 0, keyframe 0"}
