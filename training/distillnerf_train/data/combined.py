"""Several dataroots as one training set: scenes of more than one world (or dataset) in one run.

``data.dataroot`` plus ``data.extra_dataroots`` are read by one :class:`NuScenesKeyframes` each (each with its own
``teacher/``, ``features/`` and ``gt/``) and concatenated in that order; the step sampler then permutes over all of
their keyframes, so exact resume is unchanged. The roots must hold the same kinds of targets (a batch is one
dict) and, when they hold feature targets, the same reducer: a feature target means something only in the space
of the reducer the node later reduces text queries with.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, Dataset

from .config import DataConfig
from .files import read_reducer_file
from .nuscenes import NuScenesKeyframes


def training_keyframes(config: DataConfig) -> Dataset:
    """The keyframes of ``config.dataroot`` followed by those of every ``config.extra_dataroots`` entry."""
    if not config.extra_dataroots:
        return NuScenesKeyframes(config)
    sets = [NuScenesKeyframes(replace(config, dataroot=root, extra_dataroots=[]))
            for root in (config.dataroot, *config.extra_dataroots)]
    first = sets[0]
    for other in sets[1:]:
        if target_kinds(other) != target_kinds(first):
            raise ValueError(f"data config: {other.root} holds {describe(target_kinds(other))} but {first.root} holds "
                             f"{describe(target_kinds(first))}: every dataroot of one run needs the same kinds of "
                             "targets")
        if first.has_features:
            check_same_reducer(first.features_dir / "reducer.pt", other.features_dir / "reducer.pt")
    return ConcatDataset(sets)


def target_kinds(dataset: NuScenesKeyframes) -> dict[str, bool]:
    return {"teacher targets": dataset.has_teacher, "feature targets": dataset.has_features,
            "Occ3D labels": dataset.has_occupancy}


def describe(kinds: dict[str, bool]) -> str:
    held = [name for name, present in kinds.items() if present]
    return ", ".join(held) if held else "no cached targets"


def check_same_reducer(reference: Path, other: Path) -> None:
    """Both feature folders were reduced by the same PCA into the same class prototypes, or a ValueError."""
    for path in (reference, other):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: feature targets need their reducer.pt (run distillnerf "
                                    "features)")
    first, second = (read_reducer_file(path) for path in (reference, other))
    for key in ("reducer", "class_targets"):
        if not same_values(first.get(key), second.get(key)):
            raise ValueError(f"{other}: its {key} differs from {reference}'s: the feature targets of one run must "
                             "come from one reducer (distillnerf features with the same text tower and vocabulary)")


def same_values(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_values(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and torch.equal(a, b)
    return a == b
