"""Training configuration: ``distillnerf_train/configs/train/<name>.yaml`` with sections model, data, losses, optim,
schedule, train."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Literal

from distillnerf.config_files import load_yaml, resolve_config
from distillnerf.dataclass_config import dataclass_from_dict

from .data import DataConfig
from .losses import LossConfig


def _range(default, low=None, high=None):
    """A field with a checked inclusive range (see ``distillnerf.dataclass_config``)."""
    return field(default=default, metadata={"range": (low, high)})


@dataclass
class OptimConfig:
    lr: float = _range(2e-4, 1e-12)
    betas: tuple[float, float] = field(default=(0.0, 0.99), metadata={"range": (0.0, 0.999999)})
    weight_decay: float = _range(0.0, 0.0)
    grad_clip: float = _range(35.0, 1e-12)


@dataclass
class ScheduleConfig:
    """LR multiplier: linear warm-up, then constant, cosine to ``min_ratio`` or steps of ``gamma``."""

    kind: Literal["constant", "cosine", "step"] = "constant"
    warmup_steps: int = _range(0, 0)
    min_ratio: float = _range(0.1, 0.0, 1.0)
    step_size: int = _range(10000, 1)
    gamma: float = _range(0.5, 1e-12, 1.0)


@dataclass
class LoopConfig:
    max_steps: int = _range(1000, 1)
    batch_size: int = _range(1, 1)  # per process
    num_workers: int = _range(0, 0)
    seed: int = _range(0, 0)
    amp: bool = True  # fp16 autocast + grad scaling, CUDA only (ignored on CPU)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    log_every: int = _range(10, 1)
    image_every: int = _range(200, 0)
    checkpoint_every: int = _range(200, 0)
    out: str = "runs/train"
    render_virtual_views: bool = True  # render the teacher's virtual cameras when the data has them
    init_from: str = ""  # fine-tune: start from this inference checkpoint's weights (fresh optimiser, schedule)
    # model settings this run changes on purpose from init_from's (a new grid geometry, say); shapes must match
    init_changes: list[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    model: str = "cpu"  # model config name (distillnerf/configs/model) or path
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
    model = data.get("model", "cpu")
    if not isinstance(model, str) or not model:
        raise ValueError(f"{source}: model must name a model config, got {model!r}")
    try:
        return TrainConfig(
            model=model,
            data=DataConfig.from_dict(data.get("data")),
            losses=LossConfig.from_dict(data.get("losses")),
            optim=dataclass_from_dict(OptimConfig, data.get("optim"), "optim config"),
            schedule=dataclass_from_dict(ScheduleConfig, data.get("schedule"), "schedule config"),
            train=dataclass_from_dict(LoopConfig, data.get("train"), "train config"),
            source=source,
        )
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None


def _train_config_data(name_or_path: str | os.PathLike, chain: tuple[str, ...] = ()) -> tuple[dict, str]:
    """A train config file's mapping with its ``base`` (another train config's name or path) folded in: the file's
    sections update the base's key by key, so a stage that continues another names only what it changes."""
    path = resolve_config(name_or_path, "train")
    if str(path) in chain:
        raise ValueError(f"{path}: 'base' chain loops ({' -> '.join(chain + (str(path),))})")
    data = dict(load_yaml(path))
    base = data.pop("base", None)
    if base is None:
        return data, str(path)
    merged, _ = _train_config_data(base, chain + (str(path),))
    for key, value in data.items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged, str(path)


def load_train_config(name_or_path: str | os.PathLike) -> TrainConfig:
    """Load ``distillnerf_train/configs/train/<name>.yaml`` or a path (with its ``base``, when it names one). A
    relative ``data.dataroot`` is taken from the current folder."""
    data, source = _train_config_data(name_or_path)
    return train_config_from_dict(data, source)
