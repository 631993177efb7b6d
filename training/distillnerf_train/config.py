"""Training configuration: ``config/train/<name>.yaml`` with sections model, data, losses, optim, schedule, train."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from distillnerf.config_files import load_yaml, resolve_config

from .data import DataConfig
from .dataclass_config import dataclass_from_dict
from .losses import LossConfig


def _from_dict(cls, data: dict | None, section: str):
    return dataclass_from_dict(cls, data, section)


@dataclass
class OptimConfig:
    lr: float = 2e-4
    betas: tuple[float, float] = (0.0, 0.99)
    weight_decay: float = 0.0
    grad_clip: float = 35.0


@dataclass
class ScheduleConfig:
    """LR multiplier: linear warm-up, then constant, cosine to ``min_ratio`` or steps of ``gamma``."""

    kind: str = "constant"  # constant | cosine | step
    warmup_steps: int = 0
    min_ratio: float = 0.1
    step_size: int = 10000
    gamma: float = 0.5


@dataclass
class LoopConfig:
    max_steps: int = 1000
    batch_size: int = 1  # per process
    num_workers: int = 0
    seed: int = 0
    amp: bool = True  # fp16 autocast + grad scaling, CUDA only (ignored on CPU)
    device: str = "auto"  # auto | cpu | cuda
    log_every: int = 10
    image_every: int = 200
    checkpoint_every: int = 200
    out: str = "runs/train"
    render_virtual_views: bool = True  # render the teacher's virtual cameras when the data has them
    init_from: str = ""  # fine-tune: start from this inference checkpoint's weights (fresh optimiser, schedule)


@dataclass
class TrainConfig:
    model: str = "cpu"  # model config name (config/model) or path
    data: DataConfig = field(default_factory=DataConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    source: str = ""  # the file this came from

    def to_dict(self) -> dict:
        data = asdict(self)
        for section in data.values():
            if isinstance(section, dict):
                for key, value in section.items():
                    if isinstance(value, tuple):
                        section[key] = list(value)
        return data


def train_config_from_dict(data: dict, source: str = "<dict>") -> TrainConfig:
    known = {"model", "data", "losses", "optim", "schedule", "train", "source"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{source}: unknown section(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    schedule = _from_dict(ScheduleConfig, data.get("schedule"), "schedule")
    if schedule.kind not in ("constant", "cosine", "step"):
        raise ValueError(f"{source}: schedule.kind must be constant, cosine or step, got {schedule.kind!r}")
    return TrainConfig(
        model=str(data.get("model", "cpu")),
        data=DataConfig.from_dict(dict(data.get("data") or {})),
        losses=LossConfig.from_dict(data.get("losses")),
        optim=_from_dict(OptimConfig, data.get("optim"), "optim"),
        schedule=schedule,
        train=_from_dict(LoopConfig, data.get("train"), "train"),
        source=source,
    )


def load_train_config(name_or_path: str | os.PathLike) -> TrainConfig:
    """Load ``config/train/<name>.yaml`` or a path. A relative ``data.dataroot`` is taken from the current folder."""
    path = resolve_config(name_or_path, "train")
    return train_config_from_dict(load_yaml(path), str(path))
