"""The ``data:`` section of a training config: what one loader item holds, and how it is augmented."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from distillnerf.dataclass_config import dataclass_from_dict
from distillnerf.rig import NUSCENES_CAMERAS


@dataclass
class DataConfig:
    """What one item holds; the ``data:`` section of a training config."""

    dataroot: str = ""
    # More dataroots of the same version, concatenated after dataroot for training (data/combined.py), each with
    # its own teacher/, features/ and gt/ folders: scenes of several worlds in one run.
    extra_dataroots: list[str] = field(default_factory=list)
    version: str = "v1.0-trainval"
    scenes: list[str] | None = None  # scene names to keep; None = all
    cameras: list[str] = field(default_factory=lambda: list(NUSCENES_CAMERAS))
    input_size: tuple[int, int] = (228, 128)  # W, H of the model input
    render_size: tuple[int, int] = (114, 64)  # W, H of rendered depth / targets
    lidar_channel: str = "LIDAR_TOP"
    lidar_min_depth: float = 1.0
    lidar_max_depth: float = 80.0
    sky_depth: float = 115.0
    dense_depth: Literal["teacher", "gt", "auto", "none"] = "auto"  # auto = teacher, else gt
    teacher: bool = True  # read DIR/teacher/* when present
    features: bool = True  # read DIR/features/* when present
    feature_dim: int = 64
    occupancy: bool = True  # read DIR/gt/occ3d/* when present
    next_keyframe: bool = False  # also load the next keyframe's cameras (novel-view evaluation)
    teacher_dir: str | None = None  # default DIR/teacher
    features_dir: str | None = None  # default DIR/features
    gt_dir: str | None = None  # default DIR/gt
    # Photometric augmentation of the images (exposure, contrast, colour, blur, noise; data/augment.py): the
    # probability per camera image, 0 = off. Training only: evaluation never sets it.
    photometric_augment: float = field(default=0.0, metadata={"range": (0.0, 1.0)})
    # Geometric augmentation (data/augment.py CropBox): the probability per camera image of a zoom-in crop whose
    # side is at least crop_min_scale of the image's; intrinsics, LiDAR and every per-pixel target follow the crop.
    # Training only.
    geometric_augment: float = field(default=0.0, metadata={"range": (0.0, 1.0)})
    crop_min_scale: float = field(default=0.8, metadata={"range": (0.5, 1.0)})

    @classmethod
    def from_dict(cls, data: dict | None) -> "DataConfig":
        config = dataclass_from_dict(cls, data, "data config")
        if not 0 < config.lidar_min_depth < config.lidar_max_depth:
            raise ValueError(f"data config: need 0 < lidar_min_depth < lidar_max_depth, got {config.lidar_min_depth} "
                             f"and {config.lidar_max_depth}")
        if config.extra_dataroots:
            per_root = [key for key in ("scenes", "teacher_dir", "features_dir", "gt_dir") if getattr(config, key)]
            if per_root:
                raise ValueError(f"data config: {', '.join(per_root)} name(s) one dataroot's contents and cannot be "
                                 "combined with extra_dataroots")
        return config
