"""What makes a run exactly resumable: the data order as a pure function of (seed, step), every RNG state, the
training-state file's format; plus the learning-rate schedule, a pure function of the step."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Sampler
from torch.utils.data._utils.collate import default_collate

from .config import TrainConfig

TRAIN_STATE_VERSION = 1


# -- data order ----------------------------------------------------------------------------------------------------
class StepBatchSampler(Sampler):
    """Batches of indices for steps ``start..stop``: a fresh permutation per epoch seeded by (seed, epoch), the
    global position ``(step * world + rank) * batch + j`` so ranks never share a sample within a step."""

    def __init__(self, length: int, batch_size: int, seed: int, start: int, stop: int, rank: int = 0,
                 world: int = 1) -> None:
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.start, self.stop, self.rank, self.world = start, stop, rank, world
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            self._perms = {epoch: torch.randperm(self.length, generator=torch.Generator().manual_seed(
                self.seed * 100003 + epoch))}
        return self._perms[epoch]

    def indices(self, step: int) -> list[int]:
        first = (step * self.world + self.rank) * self.batch_size
        return [int(self._perm(q // self.length)[q % self.length]) for q in range(first, first + self.batch_size)]

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield self.indices(step)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def collate(items: list[dict]) -> dict:
    return default_collate(items)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


# -- RNG and checkpoints -------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_train_state(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"no training checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises several types for a truncated or foreign file
        raise ValueError(f"{path}: corrupt training checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(state, dict) or state.get("format") != "distillnerf-train-state":
        raise ValueError(f"{path}: not a distillnerf training checkpoint")
    if state.get("version") != TRAIN_STATE_VERSION:
        raise ValueError(f"{path}: training checkpoint version {state.get('version')}, expected {TRAIN_STATE_VERSION}")
    return state


# -- schedule ------------------------------------------------------------------------------------------------------
def lr_multiplier(config: TrainConfig):
    s, total = config.schedule, config.train.max_steps

    def multiplier(step: int) -> float:
        if s.warmup_steps > 0 and step < s.warmup_steps:
            return (step + 1) / s.warmup_steps
        if s.kind == "cosine":
            progress = min(1.0, (step - s.warmup_steps) / max(1, total - s.warmup_steps))
            return s.min_ratio + (1 - s.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if s.kind == "step":
            return s.gamma ** ((step - s.warmup_steps) // s.step_size)
        return 1.0

    return multiplier
