"""Where the exact answers of each replayed image live (the synthetic world writes them beside its tables)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class GroundTruthIndex:
    """Where the exact answers of each replayed image live (synthetic world only)."""

    root: Path
    sample_data: dict[tuple[str, int], tuple[str, str]]  # (channel, stamp_us) -> (sample_data token, sample token)

    def depth(self, channel: str, stamp_us: int) -> np.ndarray | None:
        token = self.sample_data.get((channel, stamp_us))
        file = self.root / "gt" / "depth" / f"{token[0]}.npz" if token else None
        if file is None or not file.is_file():
            return None
        with np.load(file) as data:
            return np.asarray(data["depth"], dtype=np.float32)

    def occupancy(self, channel: str, stamp_us: int) -> tuple[np.ndarray, np.ndarray] | None:
        token = self.sample_data.get((channel, stamp_us))
        files = sorted((self.root / "gt" / "occ3d").glob(f"*/{token[1]}/labels.npz")) if token else []
        if not files:
            return None
        with np.load(files[0]) as data:
            return np.asarray(data["semantics"], np.uint8), np.asarray(data["mask_camera"], np.uint8)


def ground_truth_index(dataroot: Path, version: str) -> GroundTruthIndex | None:
    if not (dataroot / "gt").is_dir():
        return None
    from distillnerf_ros.bag.nuscenes_source import open_nuscenes

    nusc = open_nuscenes(dataroot, version)
    index = {(sd["channel"], int(sd["timestamp"])): (sd["token"], sd["sample_token"]) for sd in nusc.sample_data}
    return GroundTruthIndex(dataroot, index)
